"""`--copy DIR`: copy every matched photo into DIR/<person>/<same folders as in PHOTOS_DIR>.

The user's photos are sacred, and so is anything already sitting in DIR, so this module is
deliberately paranoid:

* Source files are only ever opened for reading (``open(path, "rb")``). Nothing here calls
  chmod, utime, rename or unlink on a source path.
* Nothing in DIR is ever overwritten. A target that already holds the same bytes (size and
  sha256 equal) is skipped as "already there", so re-running copies nothing new. A target
  holding *different* bytes is kept and the new copy is written as ``name (2).ext``
  (``(3)``... if that is taken too), unless one of those already holds the same bytes.
  A JPEG copy that ``--xmp embed`` annotated counts as the same bytes: apart from its
  XMP segment, which carries the finder's marker, it is byte for byte the original
  (:func:`facefinder.jpeg_segments.digest_without_xmp`), so a re-run neither copies it again nor
  keeps the original a second time as ``name (2).jpg``.
* Each copy is written to a hidden temporary file in the target folder, fsynced, verified
  (the written file is read back and its sha256 compared with the hash taken while reading
  the source) and only then given its real name, by an operation that fails instead of
  replacing a file that appeared meanwhile. A crash or a full stick therefore never leaves a
  half-written file under a real photo name; a failure removes its temporary file.
* One failed copy (source vanished, disk full, read-only stick) is recorded with a one-line
  reason and the others go on.

Folder and file names are made safe for Windows (and FAT/exFAT sticks) because the
collection may come from Linux or macOS while the copy lands on a Windows-formatted stick;
see :func:`safe_component` for the exact, deterministic mapping.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from facefinder import partials
from facefinder.messages import one_line
from facefinder.records import Match
from facefinder.walk import COPIES_NOTE, is_link_info, printable

CHUNK = 1 << 20  # 1 MiB: large enough for fast USB throughput, small enough for any PC's RAM
MAX_RENAMES = 1000  # "name (2)" ... "name (1000)"; beyond that something is badly wrong
_WINDOWS_PATH_LIMIT = 240  # MAX_PATH is 260; stay below it, leaving room for the temp suffix

_FORBIDDEN_CHARS = frozenset('<>:"|?*\\/')
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{dev}{n}" for dev in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)


class CopyError(Exception):
    """A copy failed for a reason that is not an OSError (e.g. verification mismatch)."""


@dataclass
class CopySummary:
    """What a ``--copy`` run did; ``failed`` holds ``("<person>/<rel>", reason)`` pairs.

    ``renamed`` lists the destination-relative ('/'-separated) paths of copies that had to
    get a ``" (n)"`` suffix because a different file already had the name, so the user can
    be told exactly which files to look at.
    """

    copied: int = 0  # newly written files, including renamed ones
    already_there: int = 0  # skipped because an identical file is already in DIR
    renamed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_copied: int = 0
    interrupted: bool = False  # Ctrl-C while copying: the rest was not copied
    not_copied: int = 0
    # (rel, person) -> the copy in DIR, new or already there: what ``--xmp`` annotates.
    copies: dict[tuple[str, str], Path] = field(default_factory=dict, compare=False,
                                                repr=False)


# --------------------------------------------------------------------------- names


def safe_component(name: str, *, room: int = 0) -> str:
    """Map one path component to a name every OS and FAT/exFAT stick accepts.

    The mapping is deterministic, so a re-run computes the same targets and finds its
    earlier copies "already there". Rules, applied in this order:

    1. each of ``< > : " | ? * \\ /``, every control character (U+0000-U+001F, U+007F) and
       every lone surrogate (undecodable bytes of a Linux file name) becomes ``_``;
    2. trailing dots and spaces (Windows silently strips them, so ``"a."`` and ``"a"``
       would be one file) are removed and a single ``_`` is appended: ``"Mr. "`` ->
       ``"Mr_"``, ``".."`` -> ``"_"``; an empty name becomes ``"_"``;
    3. a reserved device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9, CONIN$, CONOUT$; any
       case, with or without extension, e.g. ``"con.txt"``) gets a ``_`` prefix:
       ``"_con.txt"``.

    4. a name longer than a file system takes (255 bytes, less ``room`` for what the
       finder adds to it, e.g. a sidecar's ``.xmp``) loses the end of its stem, its
       extension kept: the same name always gives the same shorter one.

    Different names can map to the same result (``"a:b"`` and ``"a?b"``); that is harmless
    because copying never overwrites: the second one is kept as ``"a_b (2)"``.
    """
    chars = []
    for ch in name:
        code = ord(ch)
        bad = ch in _FORBIDDEN_CHARS or code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF
        chars.append("_" if bad else ch)
    result = "".join(chars)
    stripped = result.rstrip(". ")
    if stripped != result or not stripped:
        result = stripped + "_"
    stem = result.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED_NAMES:
        result = "_" + result
    return _shortened(result, NAME_BYTES - room)


NAME_BYTES = 255  # the longest name ext4, NTFS (in UTF-16 units), exFAT and APFS take
SIDECAR_ROOM = len(".xmp")  # what --xmp adds to a copy's name


def _shortened(name: str, limit: int, suffix: str = "") -> str:
    """``name`` with ``suffix`` put before its extension (a rename's " (2)"), cut to
    ``limit`` bytes of UTF-8 (never inside a character): the end of the stem goes first,
    the extension and the suffix stay (unless the extension alone is too long), and a
    cut that ends in a dot or a space ends in ``_`` instead (rule 2 of
    ``safe_component``: Windows would drop them)."""
    stem, ext = os.path.splitext(name)
    if len((stem + suffix + ext).encode("utf-8")) <= limit:
        return stem + suffix + ext
    if len(ext.encode("utf-8")) > limit // 2:
        stem, ext = name, ""
    room = limit - len((suffix + ext).encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    if cut != cut.rstrip(". ") or not cut:
        cut = cut.encode("utf-8")[:room - 1].decode("utf-8", "ignore").rstrip(". ") + "_"
    return cut + suffix + ext


def folder_inside(dest: Path, parts: Sequence[str]) -> Path:
    """``dest/parts...``, each folder made where missing and every one a real folder:
    a link (or a Windows junction) among them is refused.

    Why: a link planted inside the copies' folder (by another program, a sync tool, or
    someone who wants the finder to write elsewhere) would otherwise carry the copies,
    their sidecars and ``--xmp embed``'s rewriting out of the folder the user named:
    into the photos' own folders, or over a backup. ``dest`` itself may be a link (the
    user named it); nothing inside it may.
    """
    folder = Path(dest)
    for part in parts:
        folder = folder / part
        try:
            os.mkdir(long_path(folder))
            continue
        except FileExistsError:
            pass
        info = os.lstat(long_path(folder))
        if is_link_info(info):
            raise CopyError(f"{printable(str(folder))} is a link: nothing is written "
                            f"through it, only into real folders inside {printable(str(dest))}")
        if not stat.S_ISDIR(info.st_mode):
            raise CopyError(f"{printable(str(folder))} is a file, not a folder")
    return folder



def mark_as_copies(dest: Path, what: str) -> None:
    """Leave ``walk.COPIES_NOTE`` in ``dest`` when it is the finder's own: made by this
    run, or empty when it started (a folder that already held other files is the user's,
    and a search must not leave those out). Best effort: without the note, a search of a
    folder around ``dest`` reads the copies as photos again, nothing worse."""
    note = Path(dest) / COPIES_NOTE
    try:
        os.makedirs(long_path(Path(dest)), exist_ok=True)
        with os.scandir(long_path(Path(dest))) as entries:
            if any(entry.name != COPIES_NOTE for entry in entries):
                return
        fd = os.open(long_path(note), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"This folder holds {what} made by the face finder. A search of a "
                         "folder around it leaves it out (delete this note to have it "
                         "searched).\n")
    except OSError:  # a full disk: no half note (the copies then say what went wrong)
        remove_quietly(note)


def rel_parts(rel: str) -> list[str]:
    """Split a '/'-separated rel path, refusing anything that could leave PHOTOS_DIR.

    Public because ``--annotate`` lays its drawings out as ``--copy`` lays out copies:
    one check of what a path may contain, not two that could drift apart.
    """
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise CopyError(f"unsafe relative path {rel!r}")
    if os.name == "nt" and any(":" in part or "\\" in part for part in parts):
        raise CopyError(f"unsafe relative path {rel!r}")  # "C:x" would switch drives
    return parts


def long_path(path: Path) -> str:
    """The string to hand to the OS: on Windows, long paths get the ``\\\\?\\`` prefix.

    Deep photo folders copied under DIR/<person>/ easily pass Windows' 260-character limit,
    which otherwise fails unless long paths are enabled in the registry. Names are already
    sanitised, so skipping Win32 path normalisation via ``\\\\?\\`` changes nothing else.
    """
    text = os.fspath(path)
    if os.name != "nt" or text.startswith("\\\\?\\"):
        return text
    text = os.path.abspath(text)
    if len(text) < _WINDOWS_PATH_LIMIT:
        return text
    if text.startswith("\\\\"):
        return "\\\\?\\UNC\\" + text[2:]
    return "\\\\?\\" + text


# --------------------------------------------------------------------------- file helpers
# Public: ``annotate`` and ``xmp`` write into folders the user names as this module does
# (hidden temp file, verified, named without replacing anything), through these same
# helpers rather than copies of them.


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so big videos or RAWs do not fill memory
    (through :func:`long_path`, so a deep target folder on Windows is readable too)."""
    digest = hashlib.sha256()
    with open(long_path(path), "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def remove_quietly(path: Path) -> None:
    """Remove one of *our* temporary files; a failure must not hide the original error."""
    with contextlib.suppress(OSError):
        os.unlink(long_path(path))


def create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """Create a new hidden ``.name.partial-<pid>-<random>`` file with O_EXCL; return
    (fd, path).

    O_EXCL guarantees we never open somebody else's file; the name is truncated so the
    temporary name stays within the 255-character limit even for long photo names.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = folder / partials.temp_name(name)
        try:
            return os.open(long_path(tmp), flags, 0o666), tmp
        except FileExistsError:
            continue
    raise CopyError("could not create a temporary file")


# --------------------------------------------------------------------------- one copy


class _Source:
    """An open, read-only source photo plus its lazily computed sha256."""

    def __init__(self, path: Path, hash_cache: dict[tuple, str]) -> None:
        self.handle = open(long_path(path), "rb")  # noqa: SIM115 - closed by close(); read-only
        try:
            self.stat = os.fstat(self.handle.fileno())
            if not stat.S_ISREG(self.stat.st_mode):
                raise CopyError("not a regular file")
        except BaseException:
            self.handle.close()
            raise
        self._cache = hash_cache
        self._key = (os.fspath(path), self.stat.st_size, self.stat.st_mtime_ns)

    @property
    def size(self) -> int:
        return self.stat.st_size

    def sha256(self) -> str:
        """Hash the source once per run, however many people and candidates need it."""
        cached = self._cache.get(self._key)
        if cached is None:
            self.handle.seek(0)
            digest = hashlib.sha256()
            while block := self.handle.read(CHUNK):
                digest.update(block)
            cached = self._cache[self._key] = digest.hexdigest()
        return cached

    def digest_without_xmp(self) -> str | None:
        """The source's sha256 without its XMP segment (JPEGs only; None otherwise), once
        per run: what a copy annotated by ``--xmp embed`` is compared with."""
        key = ("without xmp", *self._key)
        if key not in self._cache:
            from facefinder.jpeg_segments import digest_without_xmp

            found = digest_without_xmp(self.handle)
            self._cache[key] = found[0] if found else ""
        return self._cache[key] or None

    def remember(self, hexdigest: str) -> None:
        """Store the hash taken while copying, so a second person's copy need not re-read."""
        self._cache[self._key] = hexdigest

    def close(self) -> None:
        self.handle.close()


def _same_content(candidate: Path, source: _Source) -> bool:
    """True if candidate is a regular file with the source's size and sha256, or the
    source's copy with the finder's XMP embedded (``--xmp embed``)."""
    try:  # a link is never our copy, wherever it points (it may point at the original)
        info = os.lstat(long_path(candidate))
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode):
        return False
    if info.st_size == source.size and sha256_file(candidate) == source.sha256():
        return True
    return _annotated_copy(candidate, source)


def _annotated_copy(candidate: Path, source: _Source) -> bool:
    """Whether candidate is the source's copy with the finder's own XMP segment in it."""
    from facefinder.jpeg_segments import digest_without_xmp

    try:
        with open(long_path(candidate), "rb") as handle:
            found = digest_without_xmp(handle, only_ours=True)
    except OSError:
        return False
    if found is None:  # not a JPEG, or no XMP of ours in it
        return False
    return found[0] == source.digest_without_xmp()


def _write_verified_temp(source: _Source, folder: Path, name: str) -> Path:
    """Copy the source into a new temp file in folder, fsync it and verify it; return it.

    The source is hashed while it is read and the written file is hashed again from disk,
    so a flaky stick or a source that changed mid-copy is caught before the file gets a
    real name. The modification time is copied (best effort: FAT cannot store everything
    and some network drives refuse), the permission bits deliberately are not, because a
    read-only original would otherwise give the user a read-only copy they cannot tidy up.
    """
    fd, tmp = create_temp(folder, name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            source.handle.seek(0)
            while block := source.handle.read(CHUNK):
                digest.update(block)
                out.write(block)
                written += len(block)
            out.flush()
            os.fsync(out.fileno())
        if written != source.size:
            raise CopyError("the photo changed while it was being copied")
        if os.stat(long_path(tmp)).st_size != written:
            raise CopyError("verification failed: copy has the wrong size")
        if sha256_file(tmp) != digest.hexdigest():
            raise CopyError("verification failed: copy differs from the original")
        source.remember(digest.hexdigest())
        with contextlib.suppress(OSError):
            os.utime(long_path(tmp), ns=(source.stat.st_atime_ns, source.stat.st_mtime_ns))
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def place(tmp: Path, target: Path) -> bool:
    """Give tmp the name target unless target exists; False if it (now) exists.

    os.link fails with EEXIST instead of replacing, which makes it the portable
    no-clobber rename; the temp name is then dropped. FAT/exFAT and some network shares
    cannot hard-link, so there we fall back to a rename that cannot replace either.
    """
    try:
        os.link(long_path(tmp), long_path(target))
    except FileExistsError:
        return False
    except OSError:
        return _place_without_links(tmp, target)
    remove_quietly(tmp)  # the data now lives under target; tmp was only a second name
    return True


def _place_without_links(tmp: Path, target: Path) -> bool:
    """No-clobber rename for filesystems without hard links.

    Windows' rename refuses to replace an existing file, which is exactly what we want
    (os.replace would overwrite, so it is not used there). POSIX rename always replaces,
    so we first claim the name with an O_EXCL placeholder - which fails if anything is
    there - and then replace only that empty placeholder of our own.
    """
    if os.name == "nt":
        try:
            os.rename(long_path(tmp), long_path(target))
        except FileExistsError:
            return False
        return True
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        os.close(os.open(long_path(target), flags, 0o666))
    except FileExistsError:
        return False
    try:
        os.replace(long_path(tmp), long_path(target))
    except BaseException:
        remove_quietly(target)  # our own empty placeholder, never a user's file
        raise
    return True


def choose_name(folder: Path, name: str, same: Callable[[Path], bool], *,
                room: int = 0) -> tuple[str, bool]:
    """Where in ``folder`` this content goes: (a name, whether it is already there).

    Candidates are name, "stem (2).ext", ...; each existing one is asked ``same``, up to
    the first free "stem (n)" one, so that a file kept as "stem (2)" while another file
    held the name is still found once that file is gone; otherwise the first free
    candidate. A numbered name keeps ``room`` bytes spare as ``safe_component`` did (the
    stem gives way to the number). Raises CopyError when a thousand names are taken by
    other files.
    """
    free = None
    for number in range(1, MAX_RENAMES + 1):
        candidate = name if number == 1 else _shortened(name, NAME_BYTES - room,
                                                        f" ({number})")
        if os.path.lexists(long_path(folder / candidate)):
            if same(folder / candidate):
                return candidate, True
            continue
        free = free or candidate
        if number > 1:
            break
    if free is None:
        raise CopyError(f"too many different files already named like {name!r}")
    return free, False


def _copy_one(source_path: Path, folder: Path, name: str, cache: dict) -> tuple[str, str, int]:
    """Copy one photo into folder/name; return (outcome, final name, bytes written).

    outcome is "copied", "renamed" or "already" (``choose_name``: each existing
    candidate is compared by size then sha256). If the chosen name appears between the
    check and the final link (another run, a sync tool), the names are looked at again,
    and the verified temp file is reused rather than rewritten. ``folder`` must exist
    (``folder_inside``).
    """
    source = _Source(source_path, cache)
    tmp: Path | None = None
    try:
        for _ in range(3):  # (a race lost three times is not worth a fourth look)
            final, already = choose_name(folder, name, lambda c: _same_content(c, source),
                                         room=SIDECAR_ROOM)
            if already:
                return "already", final, 0
            if tmp is None:
                tmp = _write_verified_temp(source, folder, name)
            if place(tmp, folder / final):
                tmp = None
                return ("copied" if final == name else "renamed"), final, source.size
        raise CopyError(f"{name!r}: other files kept taking its name")
    finally:
        if tmp is not None:
            remove_quietly(tmp)
        source.close()


# --------------------------------------------------------------------------- public API


def check_destination(dest: Path) -> str | None:
    """Why copies cannot go to ``dest`` (one line), or None when they can.

    Checked before the search starts, leaving nothing behind: an existing folder must
    take a new file (a probe file is made and removed in it), a missing one must be
    creatable (its first missing folder is made and removed again), and a file in its
    place is refused.
    """
    dest = Path(dest).absolute()
    try:
        if dest.exists() and not dest.is_dir():
            return f"{dest} is a file, not a folder"
        if dest.is_dir():
            fd, probe = create_temp(dest, "probe")
            os.close(fd)
            remove_quietly(probe)
            return None
        missing = dest
        while not missing.parent.exists():
            missing = missing.parent
        if not missing.parent.is_dir():
            return f"{missing.parent} is a file, not a folder"
        missing.mkdir()  # the first folder the copies will need, made and removed again
        missing.rmdir()
    except OSError as exc:
        return f"cannot write in {dest}: {exc.strerror or exc}"
    return None


def copy_matches(
    matches: Iterable[Match],
    photos_root: Path,
    dest: Path,
    *,
    on_event: Callable[[str], None] | None = None,
) -> CopySummary:
    """Copy each matched photo ``photos_root/rel`` to ``dest/<person>/<rel>``.

    The folder path is kept so that two "IMG_0001.jpg" from different folders cannot
    collide, and a photo with two people is copied into both person folders (separate
    files, so editing one cannot change the other). Duplicate (rel, person) pairs are
    copied once. Person names and every rel component go through :func:`safe_component`.

    on_event receives one-line, human-readable messages for copies that had to be renamed
    and for copies that failed; everything is also in the returned summary.
    """
    summary = CopySummary()
    seen: set[tuple[str, str]] = set()
    hash_cache: dict[tuple[str, int, int], str] = {}
    swept: set[Path] = set()  # folders cleaned of killed runs' temporary files
    photos_root = Path(photos_root)
    dest = Path(dest)

    def emit(message: str) -> None:
        if on_event is not None:
            on_event(message)

    matches = list(matches)
    if matches:
        mark_as_copies(dest, "copies of photos")
    for done, match in enumerate(matches):
        key = (match.rel, match.person)
        if key in seen:
            continue
        seen.add(key)
        try:
            _copy_match(match, photos_root, dest, hash_cache, summary, emit, swept)
        except KeyboardInterrupt:  # a copy in progress is removed by _copy_one's cleanup
            summary.interrupted = True
            summary.not_copied = len({(m.rel, m.person) for m in matches[done:]})
            break
    return summary


def _copy_match(match: Match, photos_root: Path, dest: Path, hash_cache: dict,
                summary: CopySummary, emit: Callable[[str], None], swept: set[Path]) -> None:
    """Copy one (photo, person) match into place and count the outcome in ``summary``."""
    label = f"{match.person}/{match.rel}"
    try:
        parts = rel_parts(match.rel)
        source_path = photos_root.joinpath(*parts)
        safe_dirs = [safe_component(match.person)] + [safe_component(p) for p in parts[:-1]]
        folder = folder_inside(dest, safe_dirs)
        if folder not in swept:  # a copy killed mid-way (kill -9) left its temp file here
            swept.add(folder)
            partials.sweep(folder)
        outcome, final_name, nbytes = _copy_one(
            source_path, folder, safe_component(parts[-1], room=SIDECAR_ROOM), hash_cache
        )
    except (OSError, ValueError, CopyError) as exc:
        # ValueError covers e.g. an embedded NUL or a name the filesystem cannot encode.
        reason = one_line(exc)
        summary.failed.append((label, reason))
        emit(f"Could not copy {printable(match.rel)} for {printable(match.person)}: {reason}")
        return
    summary.copies[(match.rel, match.person)] = folder / final_name
    if outcome == "already":
        summary.already_there += 1
        return
    summary.copied += 1
    summary.bytes_copied += nbytes
    if outcome == "renamed":
        dest_rel = "/".join([*safe_dirs, final_name])
        summary.renamed.append(dest_rel)
        emit(f"{printable(match.rel)} ({printable(match.person)}): a different file already "
             f"has that name, saved as {printable(dest_rel)}")


__all__ = ["CopyError", "CopySummary", "check_destination", "choose_name", "copy_matches",
           "folder_inside", "mark_as_copies", "safe_component"]
