"""Download every wheel the finder needs for one target platform into a folder on the stick.

Why this exists: a stick for a Windows PC or a Mac is often prepared on another machine
(a Linux laptop, say), and the PC it will be plugged into may never see the internet. pip
can resolve and download wheels for a foreign platform (``--platform``, ``--python-version``,
``--implementation cp``, ``--only-binary=:all:``), so the stick's ``wheels/`` folder can be
filled anywhere; the bootstraps then install with ``--no-index --find-links wheels``.

Usage::

    python -m facefinder.wheels --platform win_amd64 --python 3.12 --dest wheels/

Optional models' dependencies (``dlib-bin`` for ``--model dlib``) are tried separately: a
platform without such a wheel still gets a complete stick for the default model, and the
command says which optional parts were left out (also recorded in ``wheels/stick-wheels.json``
so the bootstraps can repeat it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from facefinder.pypi import sha256_of

PROGRAM_DIR = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROGRAM_DIR / "requirements.txt"

# The pip that the bootstraps put on the stick (Windows' embeddable Python has none, and a
# host python3 on Linux may lack it). The same pins stand in both bootstraps; a test keeps
# them equal. The sha256 is PyPI's own.
PIP_VERSION = "26.1.2"
PIP_WHEEL_SHA256 = "382ff9f685ee3bc25864f820aa50505825f10f5458ffff07e30a6d96e5715cab"

# Windows' official embeddable CPython, pinned in bootstrap_embedded_python.ps1. 3.12.10 is
# the last 3.12 release with Windows binaries. The sha256 could not be computed here (the
# project's machines cannot reach python.org); it is the value independently pinned by
# many public projects for this file, see docs/stick.md. A wrong pin fails loudly.
WINDOWS_PYTHON_VERSION = "3.12.10"
WINDOWS_EMBED_ZIP = f"python-{WINDOWS_PYTHON_VERSION}-embed-amd64.zip"
WINDOWS_EMBED_URL = f"https://www.python.org/ftp/python/{WINDOWS_PYTHON_VERSION}/{WINDOWS_EMBED_ZIP}"
WINDOWS_EMBED_SHA256 = "4acbed6dd1c744b0376e3b1cf57ce906f9dc9e95e68824584c8099a63025a3c3"

# Oldest glibc we ask wheels for: 2.28 (Debian 10, Ubuntu 18.10+/20.04, RHEL 8). pip only
# expands the legacy manylinux2014/2010 aliases itself, so every accepted PEP 600 tag is
# listed explicitly; wheels with compressed tag sets (manylinux_2_27...manylinux_2_28) match
# any one of them.
_GLIBC_FLOOR = 28


def _manylinux(arch: str) -> list[str]:
    """All manylinux tags a glibc-2.28 machine of ``arch`` accepts, newest first."""
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(_GLIBC_FLOOR, 16, -1)]
    return [*tags, f"manylinux2014_{arch}"]


# Friendly target names -> the platform tags handed to pip (several --platform are allowed).
# macOS: 14.0 is the floor because current onnxruntime arm64 wheels need macOS 13/14 (with
# macosx_11_0 there is no onnxruntime at all for Python 3.13); pip widens a macOS tag to
# every older macOS version itself.
PLATFORMS: dict[str, list[str]] = {
    "win_amd64": ["win_amd64"],
    "macosx_arm64": ["macosx_14_0_arm64"],
    "macosx_x86_64": ["macosx_14_0_x86_64"],
    "manylinux_x86_64": _manylinux("x86_64"),
    "manylinux_aarch64": _manylinux("aarch64"),
}

# Extra, per-platform packages that are not in requirements.txt because only the stick needs
# them. msvc-runtime puts msvcp140.dll & co. next to python.exe: onnxruntime needs the Visual
# C++ runtime, which a bare Windows PC may not have, and the stick must not ask for an install.
STICK_EXTRAS: dict[str, list[str]] = {
    "win_amd64": ["msvc-runtime"],
}

# Optional models -> the packages they need at run time (requirements-<model>.txt beside
# finder.py, read so the pins live in one place). Tried one by one; missing wheels only
# remove that model from the stick.
def _requirement_lines(path: Path, fallback: list[str]) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return fallback
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


OPTIONAL: dict[str, list[str]] = {
    "dlib": _requirement_lines(PROGRAM_DIR / "requirements-dlib.txt", ["dlib-bin"]),
}

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")


class WheelError(RuntimeError):
    """The wheels for a target could not be resolved or downloaded."""


@dataclass
class Outcome:
    """What one ``fetch_wheels`` call achieved: what is there and what was left out, and why."""

    platform: str
    python: str
    files: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # optional model -> reason


def platform_tags(target: str) -> list[str]:
    """Platform tags for a friendly name, or the name itself when it already is a tag."""
    if target in PLATFORMS:
        return PLATFORMS[target]
    if re.fullmatch(r"(win|macosx|manylinux|musllinux|linux)[A-Za-z0-9_]*", target):
        return [target]
    raise WheelError(f"unknown platform {target!r}; use one of {', '.join(PLATFORMS)}")


def _check_python(python: str) -> str:
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise WheelError(f"--python wants a version like 3.12, not {python!r}")
    return python


def _target_args(target: str, python: str) -> list[str]:
    """The pip options that make it choose wheels for another machine than this one."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", python]
    for tag in platform_tags(target):
        args += ["--platform", tag]
    return args


def _pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    # --no-cache-dir: preparing a stick must not leave copies in the user's ~/.cache either.
    command = [sys.executable, "-m", "pip", *args, "--no-cache-dir", "--disable-pip-version-check"]
    return subprocess.run(command, capture_output=True, text=True)


def _last_error(done: subprocess.CompletedProcess[str]) -> str:
    """The most telling line of pip's output: its last ERROR line, else its last line."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output from pip"])[-1]


def _target_environment(target: str, python: str) -> dict[str, str]:
    """PEP 508 marker values of the target machine.

    pip evaluates dependency markers against the machine it runs on, not the --platform
    target: preparing a Windows stick on Linux would silently drop ``colorama; platform_system
    == "Windows"`` (needed by tqdm), and the offline install on Windows would then fail.
    """
    tags = platform_tags(target)
    if tags[0].startswith("win"):
        system, sys_platform, os_name, machine = "Windows", "win32", "nt", "AMD64"
    elif tags[0].startswith("macosx"):
        machine = "arm64" if tags[0].endswith("arm64") else "x86_64"
        system, sys_platform, os_name = "Darwin", "darwin", "posix"
    else:
        machine = "aarch64" if tags[0].endswith("aarch64") else "x86_64"
        system, sys_platform, os_name = "Linux", "linux", "posix"
    return {
        "python_version": python, "python_full_version": f"{python}.0",
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "platform_system": system, "sys_platform": sys_platform, "os_name": os_name,
        "platform_machine": machine, "platform_release": "", "platform_version": "",
        "implementation_version": f"{python}.0", "extra": "",
    }


def _requirement_class() -> type:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # not installed on the preparing machine: pip always carries it
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _missing_for_target(items: list[dict], env: dict[str, str]) -> list[str]:
    """Requirements whose markers hold on the target but that pip left out (see above)."""
    requirement = _requirement_class()
    have = {_canonical(item["metadata"]["name"]) for item in items}
    missing: list[str] = []
    for item in items:
        for text in item["metadata"].get("requires_dist") or []:
            req = requirement(text)
            if req.marker is None or not req.marker.evaluate(env):
                continue
            if _canonical(req.name) not in have:
                missing.append(f"{req.name}{req.specifier}")
                have.add(_canonical(req.name))
    return missing


def _resolve_items(
    target: str, python: str, requirements: list[str], requirement_file: Path | None,
) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="ff-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        args = [
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            "--target", str(Path(tmp) / "target"), *_target_args(target, python),
        ]
        if requirement_file is not None:
            args += ["-r", str(requirement_file)]
        done = _pip(args + requirements)
        if done.returncode != 0 or not report.exists():
            raise WheelError(f"{target} / Python {python}: {_last_error(done)}")
        return json.loads(report.read_text(encoding="utf-8"))["install"]


def resolve_requirements(
    target: str, python: str, requirements: list[str] | None = None,
    requirement_file: Path | None = REQUIREMENTS,
) -> tuple[list[str], list[str]]:
    """Resolve for the target without downloading; return (wheel file names, added reqs).

    Uses ``pip install --dry-run --report`` (pip >= 22.2), which reads only the wheels'
    metadata when the index publishes it (PEP 658), so checking many targets stays fast.
    The added requirements are the target-only dependencies pip's own marker evaluation
    missed; pass them to ``pip download`` too. Raises WheelError naming the package that
    has no binary wheel for the target.
    """
    _check_python(python)
    env = _target_environment(target, python)
    extra: list[str] = []
    while True:
        items = _resolve_items(target, python, list(requirements or []) + extra,
                               requirement_file)
        missing = _missing_for_target(items, env)
        if not missing:
            files = [item["download_info"]["url"].rsplit("/", 1)[-1] for item in items]
            return files, extra
        extra += missing


def resolve(
    target: str, python: str, requirements: list[str] | None = None,
    requirement_file: Path | None = REQUIREMENTS,
) -> list[str]:
    """The wheel file names a complete install for the target consists of (see above)."""
    return resolve_requirements(target, python, requirements, requirement_file)[0]


def optional_left_out(target: str, python: str) -> dict[str, str]:
    """Optional models whose packages have no binary wheel for the target, with the reason.

    Checked by resolution only (no download), so it is cheap enough for tests and for the
    bootstraps to call before deciding what to install.
    """
    missing: dict[str, str] = {}
    for model, packages in OPTIONAL.items():
        try:
            resolve(target, python, requirements=packages, requirement_file=None)
        except WheelError as error:
            missing[model] = (
                f"no binary wheel of {', '.join(packages)} for {target} with Python {python} "
                f"(pip: {error})"
            )
    return missing


def _download(target: str, python: str, dest: Path, args: list[str]) -> None:
    done = _pip(["download", "--dest", str(dest), *_target_args(target, python), *args])
    if done.returncode != 0:
        raise WheelError(f"{target} / Python {python}: {_last_error(done)}")


def fetch_wheels(
    target: str, python: str, dest: Path, requirement_file: Path = REQUIREMENTS,
    optional: bool = True, log: Callable[[str], None] = print,
) -> Outcome:
    """Download the complete wheel set for one target into ``dest``; return what happened.

    The default model's dependencies (requirements.txt), pip itself and the per-platform
    extras must all resolve, else WheelError: a stick without them cannot run at all. Each
    optional model is then tried on its own and merely reported when it has no wheel.
    """
    _check_python(python)
    dest.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in dest.glob("*.whl")}
    outcome = Outcome(platform=target, python=python)

    log(f"Downloading the finder's wheels for {target}, Python {python} into {dest} ...")
    _, added = resolve_requirements(target, python, requirement_file=requirement_file)
    if added:
        log(f"Adding dependencies only {target} needs: {', '.join(added)}")
    _download(target, python, dest, ["-r", str(requirement_file), *added])
    extras = [f"pip=={PIP_VERSION}", *STICK_EXTRAS.get(target, [])]
    log(f"Downloading the stick's own tools: {', '.join(extras)} ...")
    _download(target, python, dest, extras)

    if optional:
        outcome.left_out = optional_left_out(target, python)
        for model, packages in OPTIONAL.items():
            if model in outcome.left_out:
                log(f"Optional model '{model}' left out: {outcome.left_out[model]}. The "
                    f"default model is unaffected; 'finder.py --model {model}' will not be "
                    "available on that stick.")
                continue
            _download(target, python, dest, packages)
            log(f"Optional model '{model}': wheels downloaded ({', '.join(packages)}).")

    if target == "win_amd64":
        _fetch_windows_python(python, dest, log)

    outcome.files = sorted({p.name for p in dest.glob("*.whl")} - before)
    _record(dest, outcome)
    log(f"Done: {len(outcome.files)} new wheel file(s) in {dest}.")
    return outcome


def _fetch_windows_python(python: str, dest: Path, log: Callable[[str], None]) -> None:
    """Put the pinned embeddable CPython zip into ``dest`` too, so Windows needs no internet.

    Best effort: it comes from python.org, not PyPI, so a failure here only tells the user
    how to add the file by hand (the Windows bootstrap checks its sha256 either way).
    """
    if python != WINDOWS_PYTHON_VERSION.rsplit(".", 1)[0]:
        log(f"Note: the Windows bootstrap installs Python {WINDOWS_PYTHON_VERSION}; wheels for "
            f"Python {python} will not fit it.")
        return
    target = dest / WINDOWS_EMBED_ZIP
    if target.exists() and sha256_of(target) == WINDOWS_EMBED_SHA256:
        return
    part = target.with_suffix(".part")
    try:
        log(f"Downloading {WINDOWS_EMBED_URL} ...")
        with urllib.request.urlopen(WINDOWS_EMBED_URL, timeout=60) as response, \
                part.open("wb") as out:
            shutil.copyfileobj(response, out)
        if sha256_of(part) != WINDOWS_EMBED_SHA256:
            raise OSError(f"sha256 mismatch (expected {WINDOWS_EMBED_SHA256})")
        part.replace(target)
    except OSError as error:
        part.unlink(missing_ok=True)
        log(f"Could not download {WINDOWS_EMBED_ZIP} ({error}). For an offline Windows stick, "
            f"copy it into {dest} yourself (sha256 {WINDOWS_EMBED_SHA256}); otherwise the "
            "Windows bootstrap downloads it.")


def _record(dest: Path, outcome: Outcome) -> None:
    """Remember per target what was left out, so bootstraps and people can see it later."""
    manifest = dest / "stick-wheels.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data[f"{outcome.platform}/cp{outcome.python.replace('.', '')}"] = {
        "left_out": outcome.left_out,
    }
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m facefinder.wheels",
        description="Download every wheel the finder needs for a target platform, so a "
        "stick can be prepared for another OS and installed offline.",
    )
    parser.add_argument("--platform", required=True,
                        help=f"one of {', '.join(PLATFORMS)} (or an exact pip platform tag)")
    parser.add_argument("--python", default="3.12", help="target Python version, e.g. 3.12")
    parser.add_argument("--dest", type=Path, default=PROGRAM_DIR / "wheels",
                        help="folder to fill (default: wheels/ beside finder.py)")
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--no-optional", action="store_true",
                        help="skip optional models' packages (dlib-bin)")
    parser.add_argument("--print-pip-args", action="store_true",
                        help="only print the pip options selecting the target, one per line "
                        "(used by bootstrap.sh, so the platform tags live in one place)")
    args = parser.parse_args(argv)
    try:
        if args.print_pip_args:
            print("\n".join(_target_args(args.platform, _check_python(args.python))))
            return 0
        fetch_wheels(args.platform, args.python, args.dest, args.requirements,
                     optional=not args.no_optional)
    except WheelError as error:
        print(f"error: {error}", file=sys.stderr)
        print("Is PyPI reachable from here? The default model's packages must all have "
              "binary wheels for the target; nothing can be compiled on a stick.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
