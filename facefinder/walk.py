"""Find every file under PHOTOS_DIR, safely and lazily, in a stable order.

A relative's photo collection is the hostile input here: hundreds of thousands of files,
folders copied from phones and NAS boxes (with their thumbnail and trash folders), symlink
or junction loops, unreadable folders and file names in any encoding. The walk therefore

* is a generator over ``os.scandir`` with an explicit stack, so the first file is yielded
  at once and memory holds one sorted listing per folder depth, never the whole tree;
* sorts every listing, so two runs over the same tree visit files in the same order (the
  report and any resumable index depend on that);
* enters each real folder at most once, keyed by ``(st_dev, st_ino)``, so symlinked
  folders are followed but a loop cannot make the walk endless or report photos twice;
* reports problems through ``on_error`` as one-line reasons and carries on.

Relative paths are ``str`` built from ``os.scandir`` names. On Linux/macOS a name that is
not valid in the file-system encoding arrives with surrogate escapes (``os.fsdecode``
behaviour): it round-trips to the right bytes when used as a path, but printing it may
raise ``UnicodeEncodeError`` — pass it through :func:`printable` before showing it.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from facefinder.records import FileKind


def _pillow_reads_avif() -> bool:
    """True when some installed plugin can decode AVIF.

    Pillow >= 11.2 may have it built in; older pillow-heif releases shipped an AVIF opener.
    Listing ``.avif`` files as images when nothing can read them would turn every one of
    them into a decode error instead of a quiet "other" file.
    """
    try:
        from PIL import features

        if features.check_module("avif"):
            return True
    except (ImportError, ValueError):  # no Pillow, or a Pillow that predates AVIF
        pass
    try:
        import pillow_heif
    except ImportError:
        return False
    return hasattr(pillow_heif, "register_avif_opener")


_IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib",
    ".tif", ".tiff", ".gif", ".heic", ".heif",
}
if _pillow_reads_avif():
    _IMAGE_SUFFIXES.add(".avif")

IMAGE_EXTENSIONS: frozenset[str] = frozenset(_IMAGE_SUFFIXES)
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".3gp"}
)

# Folders that hold no user photos but copies, thumbnails or deleted files; compared
# case-insensitively because Windows and macOS file systems usually are.
SKIPPED_FOLDERS: frozenset[str] = frozenset(
    name.casefold()
    for name in (
        "$RECYCLE.BIN", "System Volume Information", "@eaDir", "#recycle", ".Trashes",
        ".Spotlight-V100", ".fseventsd", "lost+found", "__MACOSX",
    )
)
SKIPPED_FILES: frozenset[str] = frozenset(
    name.casefold() for name in ("Thumbs.db", "desktop.ini", ".DS_Store")
)

_WINDOWS = sys.platform == "win32"
_HIDDEN_OR_SYSTEM = getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 2) | getattr(
    stat, "FILE_ATTRIBUTE_SYSTEM", 4
)

ErrorCallback = Callable[[str, str], None]
FolderKey = tuple[int, int] | str


def kind_of(path: Path) -> FileKind:
    """Classify a file by its lowercase suffix; content is checked later, by the decoder."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "other"


def printable(rel: str) -> str:
    """``rel`` safe to print: undecodable bytes (surrogate escapes) as U+FFFD and control
    characters (newlines, terminal escapes) as visible ``\\xNN`` escapes, so a file name
    can neither break a line of the report nor drive the terminal."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in rel):
        rel = "".join(f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 else ch
                      for ch in rel)
    return rel


def _reason(error: OSError) -> str:
    """The OS's short wording ("Permission denied"), without errno numbers or paths."""
    text = error.strerror or str(error) or type(error).__name__
    return " ".join(text.split())  # one line, whatever the platform put in it


def _sort_key(entry: os.DirEntry[str]) -> tuple[str, str]:
    """Case-insensitive order (what a person sees), ties broken by exact name for stability."""
    return (entry.name.casefold(), entry.name)


def _folder_key(path: str) -> FolderKey:
    """Identity of the real folder behind ``path`` (following links); raises OSError.

    ``(st_dev, st_ino)`` is what makes two spellings or links of one folder equal. Some
    Windows/network file systems report inode 0; the resolved path stands in for them.
    """
    info = os.stat(path)
    if info.st_ino == 0:
        return os.path.normcase(os.path.realpath(path))
    return (info.st_dev, info.st_ino)


class _Excluder:
    """Decides whether a folder is one of the ``exclude`` paths.

    An excluded path may not exist yet when the walk starts (the --copy destination is
    created while matches are copied during the walk), so paths that could not be
    stat'ed are retried each time a folder is checked; there are only a few of them.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self._names = {os.path.normcase(os.path.abspath(p)) for p in paths}
        self._keys: set[FolderKey] = set()
        self._pending = [os.fspath(p) for p in paths]
        self._refresh()

    def _refresh(self) -> None:
        still_pending = []
        for path in self._pending:
            try:
                self._keys.add(_folder_key(path))
            except OSError:
                still_pending.append(path)
        self._pending = still_pending

    def excluded(self, path: str, key: FolderKey) -> bool:
        if os.path.normcase(os.path.abspath(path)) in self._names:
            return True
        if self._pending:
            self._refresh()
        return key in self._keys


def _hidden(entry: os.DirEntry[str]) -> bool:
    """Dot-names everywhere; Windows hidden/system attributes too.

    On Windows ``entry.stat(follow_symlinks=False)`` is filled from the directory
    listing itself, so this costs no extra system call; elsewhere it is not consulted.
    """
    if entry.name.startswith("."):
        return True
    if _WINDOWS:
        try:
            attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
        except OSError:
            return False
        return bool(attributes & _HIDDEN_OR_SYSTEM)
    return False


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _list_folder(path: str, rel: str, on_error: ErrorCallback) -> list[os.DirEntry[str]]:
    """Sorted entries of one folder, or what could be read of them before an error."""
    entries: list[os.DirEntry[str]] = []
    try:
        with os.scandir(path) as listing:
            for entry in listing:
                entries.append(entry)
    except OSError as error:
        on_error(rel or ".", f"cannot open folder: {_reason(error)}")
    entries.sort(key=_sort_key)
    return entries


def scan(
    root: Path,
    *,
    exclude: Sequence[Path] = (),
    on_error: ErrorCallback | None = None,
) -> Iterator[tuple[Path, str, FileKind]]:
    """Yield ``(absolute path, '/'-separated path relative to root, kind)`` for every file.

    Order: each folder's entries sorted case-insensitively, a subfolder walked when its
    turn comes (depth first), so the order is stable across runs and platforms.
    Skipped silently: hidden entries, system/trash folders, thumbnail/metadata files,
    AppleDouble ``._*`` files and the folders in ``exclude``. Reported via ``on_error(rel,
    reason)``: folders that cannot be opened and broken links. "other" files are yielded
    too so the caller can count them. ``root`` itself is always walked, even if excluded.
    """
    report: ErrorCallback = on_error or (lambda rel, reason: None)
    root_text = os.path.abspath(os.fspath(root))
    excluder = _Excluder(exclude)
    visited: set[FolderKey] = set()
    try:
        visited.add(_folder_key(root_text))
    except OSError as error:
        report(".", f"cannot open folder: {_reason(error)}")
        return

    # One frame per folder depth: (iterator over its sorted entries, rel prefix).
    stack: list[tuple[Iterator[os.DirEntry[str]], str]] = [
        (iter(_list_folder(root_text, "", report)), "")
    ]
    while stack:
        entries, prefix = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        name = entry.name
        if _hidden(entry):
            continue
        rel = prefix + name
        try:
            is_dir = entry.is_dir()
            is_file = not is_dir and entry.is_file()
        except OSError as error:  # e.g. a link that points at itself (ELOOP)
            broken = "broken link" if _is_link(entry) else "cannot read entry"
            report(rel, f"{broken}: {_reason(error)}")
            continue

        if is_dir:
            if name.casefold() in SKIPPED_FOLDERS:
                continue
            try:
                key = _folder_key(entry.path)
            except OSError as error:
                report(rel, f"cannot open folder: {_reason(error)}")
                continue
            if key in visited or excluder.excluded(entry.path, key):
                continue  # a link back into the tree (or a loop), or an excluded folder
            visited.add(key)
            stack.append((iter(_list_folder(entry.path, rel, report)), rel + "/"))
        elif is_file:
            if name.casefold() in SKIPPED_FILES or name.startswith("._"):
                continue
            yield Path(entry.path), rel, kind_of(Path(name))
        elif _is_link(entry):
            try:
                os.stat(entry.path)
            except OSError as error:
                report(rel, f"broken link: {_reason(error)}")
        # Anything else (sockets, FIFOs, devices) is not a photo and not worth a message.
