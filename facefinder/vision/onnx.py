"""One onnxruntime session per model, set up the same way for every model.

Why a shared base: thread counts and graph optimisation decide most of the speed on a
2-core laptop, and they must be chosen in one place. When the finder runs N worker
processes, each session gets ``threads`` = 1 so the workers do not fight over cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxModel:
    """Loads an ONNX file once and runs it on the CPU."""

    def __init__(self, path: Path | bytes, threads: int = 1) -> None:
        import onnxruntime as ort  # here, so the main process never pays for it

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # the CenterFace file has harmless unused initializers
        # The arena keeps the largest batch's buffers forever (~300 MB per worker for
        # FaceNet); without it peak memory stays low and speed is the same (measured).
        options.enable_cpu_mem_arena = False
        source = path if isinstance(path, bytes) else str(path)
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """All outputs of the graph for one input batch."""
        return self.session.run(None, {self.input_name: batch})
