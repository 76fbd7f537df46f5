"""Build the YOLOv8n object detector from its pinned npm tarball (run once, at fetch time).

The package ships Ultralytics' own ONNX export (``yolov8n.onnx``, opset 17), made for one
input size: NCHW 640x640, 0-1, and a decoding head whose anchor grid and reshapes are
frozen for 8400 cells of that size. The build keeps the network and cuts that head off:
the three per-level outputs (stride 8, 16, 32; each 64 box-distribution channels + 80
class logits per cell) become the graph's outputs, and the input takes any height and
width (multiples of 32). In front it adds the two steps the run time would otherwise do in
numpy: NHWC -> NCHW and 0-255 -> 0-1, so the detector is fed exactly as CenterNet is
(``vision.objects.network_input``). Decoding the cut outputs is ``vision.objects``'s job.

Nothing else changes: every kept node and weight is the published one (the graph is
pruned, not rewritten), and the build is deterministic.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from facefinder.models import catalog
from facefinder.models.npm import extract, pinned_members

if TYPE_CHECKING:
    import onnx

# Ultralytics' export names: the concatenated box + class maps of the three levels, the
# last tensors before the head flattens them into its frozen 8400-cell layout.
HEAD_OUTPUTS = {
    "stride8": "/model.22/Concat_output_0",
    "stride16": "/model.22/Concat_1_output_0",
    "stride32": "/model.22/Concat_2_output_0",
}
INPUT = "input"  # NHWC float, 0-255, like CenterNet's


def cut(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with the head's decoding removed and an any-size NHWC 0-255 input."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    (old_input,) = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    needed = set(HEAD_OUTPUTS.values())
    kept = []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    kept.reverse()
    missing = set(HEAD_OUTPUTS.values()) - {o for n in kept for o in n.output}
    if missing:
        raise ValueError(f"not the pinned YOLOv8 export: no {', '.join(sorted(missing))}")
    front = [
        helper.make_node("Transpose", [INPUT], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Div", ["nchw", "pixel_range"], [old_input.name]),
    ]
    back = [helper.make_node("Identity", [tensor], [name]) for name, tensor in HEAD_OUTPUTS.items()]
    used = {name for node in kept for name in node.input}
    weights = [t for t in graph.initializer if t.name in used]
    weights.append(numpy_helper.from_array(np.array(255, np.float32), "pixel_range"))
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, "height", "width", 3])]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                             [1, 144, f"{name}_h", f"{name}_w"])
               for name in HEAD_OUTPUTS]
    new_graph = helper.make_graph(front + kept + back, graph.name, inputs, outputs, weights)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                            producer_name="facefinder.models.build.yolov8")
    out.ir_version = model.ir_version
    for prop in model.metadata_props:  # author, licence, version, class names: kept as published
        if prop.key not in ("imgsz", "batch"):  # no longer true of the cut graph
            out.metadata_props.add(key=prop.key, value=prop.value)
    onnx.checker.check_model(out)
    return out


def build(archive: Path, models: Path) -> None:
    """Extract ``yolov8n.onnx`` from ``archive`` (sha256-checked), cut it, write it."""
    import onnx

    pin = catalog.YOLO_NODE_RED
    target = models / catalog.YOLOV8N_FILE
    with tempfile.TemporaryDirectory(dir=models, prefix=".yolov8-") as work:
        published = Path(work) / "yolov8n.onnx"
        extract(archive, {pin.members[0]: published}, pinned_members(pin))
        model = cut(onnx.load(str(published)))
    model.doc_string = (f"Ultralytics YOLOv8n (COCO, AGPL-3.0) from {pin.package} {pin.version}, "
                        "decoding head cut off, any input size, NHWC 0-255 input")
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(model.SerializeToString())
    partial.replace(target)
