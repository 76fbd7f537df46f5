"""Find every file under PHOTOS_DIR, safely and lazily, in a stable order.

A relative's photo collection is the hostile input here: hundreds of thousands of files,
folders copied from phones and NAS boxes (with their thumbnail and trash folders), symlink
or junction loops, unreadable folders and file names in any encoding. The walk therefore

* is a generator over ``os.scandir`` with an explicit stack, so the first file is yielded
  at once and memory holds one sorted listing per folder depth, never the whole tree;
* sorts every listing, so two runs over the same tree visit files in the same order (the
  report and any resumable index depend on that);
* follows a symbolic link (or Windows junction), to a folder or a file, only while its
  resolved target stays under the folder walked: a link to ``/`` or to another drive would
  otherwise pull in the whole system (``/proc`` included), to be read and copied. A link
  that leads outside is reported (one line through ``on_error``) and never read, unless the
  caller passes ``follow_links=True`` (``--follow-links``). The reference folder is walked
  with ``follow_links=True``: the user built it by hand, and linking a person's folder
  to photos kept elsewhere is a deliberate choice there;
* enters each real folder at most once, keyed by ``(st_dev, st_ino)``, so a link back into
  the tree (or a loop, followed links or not) cannot make the walk endless or report
  photos twice;
* reports problems through ``on_error`` as one-line reasons and carries on.

:class:`Presence` answers the reverse question for ``--prune``: is a file the index once
found still there, positively gone, or impossible to tell (an unplugged drive)?

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
    ".hif",  # Canon's and Fujifilm's HEIF
    ".mpo",  # multi-picture JPEG: Fujifilm 3D cameras, the Nintendo 3DS (its first view)
    ".jp2",  # JPEG 2000 (scans, archives)
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
# The note the finder leaves in a folder of its own copies or drawings (``--copy``,
# ``--annotate``): a search of a folder around it leaves that folder out, or every run
# would find the copies as new photos and count each person twice.
COPIES_NOTE = ".facefinder-copies"
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


def _is_link_or_junction(entry: os.DirEntry[str]) -> bool:
    """A symbolic link, or on Windows a junction (``mklink /J``), which Python < 3.12
    reports as a plain folder but which can point anywhere just the same."""
    if _is_link(entry):
        return True
    if _WINDOWS:  # there, entry.stat(follow_symlinks=False) costs no system call
        try:
            return _is_junction(entry.stat(follow_symlinks=False))
        except OSError:
            return False
    return False


def _is_junction(info: os.stat_result) -> bool:
    """Windows junctions (a folder to ``lstat`` on Python < 3.12, but really a link)."""
    tag = getattr(info, "st_reparse_tag", 0)
    return _WINDOWS and tag == getattr(stat, "IO_REPARSE_TAG_MOUNT_POINT", 0xA0000003)


def is_link_info(info: os.stat_result) -> bool:
    """Whether an ``lstat`` result is a link: a symbolic link, or a Windows junction (by
    its reparse tag: OneDrive's and other cloud folders are reparse points too, and are
    real folders)."""
    return stat.S_ISLNK(info.st_mode) or _is_junction(info)


OUTSIDE_LINK = "link to a place outside the folder searched (use --follow-links to include it)"


def _resolved(path: str) -> str:
    """``path`` with every link resolved, in the platform's case (raises OSError)."""
    return os.path.normcase(os.path.realpath(path))


def _leads_outside(link: str, inside: str) -> bool:
    """True when ``link`` resolves to a place not under ``inside`` (a :func:`_resolved`
    folder). Only link targets and names are looked at (``readlink``/``lstat``), nothing
    is opened. A link that cannot be resolved counts as outside: it is not followed."""
    try:
        target = _resolved(link)
    except (OSError, ValueError):
        return True
    return not (target == inside or target.startswith(inside.rstrip(os.sep) + os.sep))


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
    follow_links: bool = False,
) -> Iterator[tuple[Path, str, FileKind]]:
    """Yield ``(absolute path, '/'-separated path relative to root, kind)`` for every file.

    Order: each folder's entries sorted case-insensitively, a subfolder walked when its
    turn comes (depth first), so the order is stable across runs and platforms.
    Skipped silently: hidden entries, system/trash folders, thumbnail/metadata files,
    AppleDouble ``._*`` files and the folders in ``exclude``. Reported via ``on_error(rel,
    reason)``: folders that cannot be opened, broken links and - unless ``follow_links`` -
    links (to folders or files) whose target lies outside ``root`` (:data:`OUTSIDE_LINK`),
    which are then not read at all. Links that stay under ``root`` are always followed.
    "other" files are yielded too so the caller can count them. ``root`` itself is always
    walked, even if excluded or a link itself.
    """
    report: ErrorCallback = on_error or (lambda rel, reason: None)
    root_text = os.path.abspath(os.fspath(root))
    try:
        inside = _resolved(root_text)
    except (OSError, ValueError):  # the root's own problems are reported just below
        inside = os.path.normcase(root_text)
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
        if not follow_links and _is_link_or_junction(entry) and _leads_outside(entry.path,
                                                                                inside):
            report(rel, OUTSIDE_LINK)
            continue
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
            if os.path.isfile(os.path.join(entry.path, COPIES_NOTE)):
                continue  # the finder's own copies or drawings (a run's --copy folder)
            visited.add(key)
            stack.append((iter(_list_folder(entry.path, rel, report)), rel + "/"))
        elif is_file:
            if name.casefold() in SKIPPED_FILES or name.startswith("._"):
                continue
            yield Path(entry.path), rel, kind_of(Path(name))
        else:
            if _is_link(entry):
                try:
                    os.stat(entry.path)
                except OSError as error:
                    report(rel, f"broken link: {_reason(error)}")
                    continue
            if kind_of(Path(name)) != "other":
                # A FIFO, socket or device named like a photo or video: reading it would
                # wait forever (a FIFO) or never end (a device): named, and left alone.
                report(rel, f"not a regular file ({_special(entry)}): not read")
            # Any other such entry (a socket, a FIFO) is not a photo: not worth a message.


def _special(entry: os.DirEntry[str]) -> str:
    """What a folder entry that is neither a file nor a folder is, in a word or two."""
    try:
        mode = entry.stat().st_mode
    except OSError:
        return "unknown kind"
    for test, word in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return word
    return "unknown kind"


class Presence:
    """Is a file the index found under ``root`` still there? For ``--prune``.

    ``presence(rel)`` is ``True`` (it is there), ``False`` (positively gone) or ``None``
    (cannot tell: keep it). A plain ``isfile`` is False on any error, so an unplugged drive,
    a subfolder linked to one, or a folder that cannot be read would make files look deleted
    and hours of analysis would be thrown away. A file is gone only when

    * ``lstat`` says its name does not exist (ENOENT, not "permission denied" or others),
    * the nearest folder above it that does exist, up to ``root``, is a real folder (not a
      link: a dangling one, or one to an unplugged drive's mount point) that can be read
      and is not empty, and so is ``root``: an unplugged drive leaves its mount point an
      empty folder, whether it is ``root`` or a folder below. (A folder the user emptied
      by hand keeps its files in the index until the folder itself is deleted.)

    Each folder is looked at once, however many files were in it.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.path.abspath(os.fspath(root))
        self._folders: dict[str, bool | None] = {}
        self._root_usable = self._listed(self._root)

    def __call__(self, rel: str) -> bool | None:
        if not self._root_usable:
            return None
        parts = rel.split("/")
        try:
            os.lstat(os.path.join(self._root, *parts))
        except FileNotFoundError:
            pass
        except (OSError, ValueError):  # unreadable folder, a file where a folder was, ...
            return None
        else:
            return True
        for depth in range(len(parts) - 1, 0, -1):  # the nearest folder that exists
            state = self._folder(os.path.join(self._root, *parts[:depth]))
            if state is not False:
                return False if state else None
        return False  # nothing between the file and the usable root exists

    def _folder(self, path: str) -> bool | None:
        """False: no such name; True: a real, readable, non-empty folder; None: else."""
        if path not in self._folders:
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                self._folders[path] = False
            except (OSError, ValueError):
                self._folders[path] = None
            else:
                real = stat.S_ISDIR(info.st_mode) and not _is_junction(info)
                self._folders[path] = True if real and self._listed(path) else None
        return self._folders[path]

    @staticmethod
    def _listed(path: str) -> bool:
        """True when the folder ``path`` can be read and holds something."""
        try:
            with os.scandir(path) as listing:
                return next(listing, None) is not None
        except OSError:
            return False

