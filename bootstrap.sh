#!/usr/bin/env bash
# Prepare this folder (copied onto a USB stick) so the face finder runs from it on another
# Linux or macOS computer of the same kind (x86_64 or arm64), with no internet there and
# nothing installed or written on it.
#
# Why this design: a relocatable standalone CPython for Linux/macOS is only published on
# GitHub, which this project cannot rely on; virtual environments hard-code absolute paths
# and break when the stick is mounted elsewhere. So the stick carries every *package*
# (installed with `pip install --target`, one folder per Python version) plus the models,
# and borrows the host's own python3 (3.10 - 3.13), which Linux distributions ship.
# finder.sh picks the folder matching whichever python3 the host has.
#
# Usage (on a computer with internet, from the stick's folder):
#   bash bootstrap.sh                 # packages for Python 3.10-3.13, the models, finder.sh
#   bash bootstrap.sh --python 3.12   # only for Python 3.12 (smaller, faster)
#   bash bootstrap.sh --with-dlib     # also the optional dlib model where wheels exist
# Offline: put the wheels in wheels/ first (python -m facefinder.wheels ...); they are used
# with --no-index automatically. Re-running repairs what is missing and skips what is done.
# bash 3.2 compatible (macOS' /bin/bash).

set -euo pipefail

PIP_VERSION="26.1.2"
PIP_WHEEL="pip-${PIP_VERSION}-py3-none-any.whl"
PIP_SHA256="382ff9f685ee3bc25864f820aa50505825f10f5458ffff07e30a6d96e5715cab"
PIP_URL="https://files.pythonhosted.org/packages/5d/95/6b5cb3461ea5673ba0995989746db58eb18b91b54dbf331e72f569540946/${PIP_WHEEL}"
SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"
NEED_FREE_MB_PER_PYTHON=400   # one package folder plus pip's unpacking room
NEED_FREE_MB_MODELS=300       # the models and their conversion

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
PACKAGES="$HERE/python-packages"
WHEELS="$HERE/wheels"

say()  { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die()  { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
}

PYTHONS=""
WITH_DLIB=0
SKIP_MODELS=0
USE_WHEELS=auto
PREP_PYTHON="${FINDER_PYTHON:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --python) [ $# -ge 2 ] || die "--python needs a version, e.g. 3.12"
                  PYTHONS="$PYTHONS $2"; shift ;;
        --with-dlib) WITH_DLIB=1 ;;
        --skip-models) SKIP_MODELS=1 ;;
        --online) USE_WHEELS=no ;;
        --python-exe) [ $# -ge 2 ] || die "--python-exe needs a path"; PREP_PYTHON="$2"; shift ;;
        -h|--help) usage ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
    shift
done
PYTHONS="${PYTHONS:-$SUPPORTED_PYTHONS}"
for v in $PYTHONS; do
    case " $SUPPORTED_PYTHONS " in *" $v "*) ;; *) die "Python $v is not supported (use one of: $SUPPORTED_PYTHONS)";; esac
done

# pip and Python write their temp files here, on the stick, and nowhere in the host's /tmp.
BOOT_TMP="$HERE/tmp/bootstrap-$$"
cleanup() { rm -rf "$BOOT_TMP"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
say "Step 1/6: checking this folder can be written and has room"
mkdir -p "$BOOT_TMP" 2>/dev/null || die "cannot write to $HERE (read-only stick?)."
export TMPDIR="$BOOT_TMP" TEMP="$BOOT_TMP" TMP="$BOOT_TMP"
# onnxruntime writes a device id under ~/.cache on import; pip keeps caches there too.
export XDG_CACHE_HOME="$BOOT_TMP/cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
count=0; for _ in $PYTHONS; do count=$((count + 1)); done
need_mb=$((count * NEED_FREE_MB_PER_PYTHON + NEED_FREE_MB_MODELS))
free_mb=$(df -Pk "$HERE" | awk 'NR==2 {print int($4 / 1024)}')
info "free: ${free_mb} MB, needed at most: ${need_mb} MB"
[ "${free_mb:-0}" -ge "$need_mb" ] || die "not enough space on the stick: ${free_mb} MB free, ${need_mb} MB needed. Free some space or use a bigger stick (or fewer --python versions)."

# ---------------------------------------------------------------------------------------
say "Step 2/6: finding a python3 (3.10 - 3.13) on this computer to prepare the stick with"
py_version() { "$1" -I -B -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
if [ -z "$PREP_PYTHON" ]; then
    for cand in python3 python3.13 python3.12 python3.11 python3.10; do
        path=$(command -v "$cand" 2>/dev/null) || continue
        if [ "$(uname -s)" = Darwin ] && [ "$path" = /usr/bin/python3 ] && ! xcode-select -p >/dev/null 2>&1; then
            continue  # Apple's stub would pop up an installer dialog
        fi
        v=$(py_version "$path") || continue
        case " $SUPPORTED_PYTHONS " in *" $v "*) PREP_PYTHON="$path"; break ;; esac
    done
fi
[ -n "$PREP_PYTHON" ] || die "no python3 between 3.10 and 3.13 found. Install one (Linux: your distribution's python3 package; macOS: the installer from python.org) and run this again."
PREP_VERSION=$(py_version "$PREP_PYTHON") || die "$PREP_PYTHON does not run"
OS_NAME=$("$PREP_PYTHON" -I -B -c 'import sys; print(sys.platform)')
ARCH=$("$PREP_PYTHON" -I -B -c 'import platform; print(platform.machine())')
case "$OS_NAME-$ARCH" in
    linux-x86_64)  TARGET=manylinux_x86_64 ;;
    linux-aarch64) TARGET=manylinux_aarch64 ;;
    darwin-arm64)  TARGET=macosx_arm64 ;;
    darwin-x86_64) TARGET=macosx_x86_64 ;;
    *) die "this computer ($OS_NAME, $ARCH) is not one the stick can be prepared for" ;;
esac
info "using $PREP_PYTHON (Python $PREP_VERSION) for $OS_NAME $ARCH; wheels: $TARGET"
case " $PYTHONS " in
    *" $PREP_VERSION "*) ;;
    *) PYTHONS="$PYTHONS $PREP_VERSION"; info "also preparing Python $PREP_VERSION: the models are fetched with it" ;;
esac

# ---------------------------------------------------------------------------------------
say "Step 3/6: getting pip $PIP_VERSION (checked against its pinned sha256)"
sha256_of() { "$PREP_PYTHON" -I -B -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"; }
mkdir -p "$PACKAGES"
PIP_HERE="$PACKAGES/$PIP_WHEEL"
if [ -f "$PIP_HERE" ] && [ "$(sha256_of "$PIP_HERE")" = "$PIP_SHA256" ]; then
    info "already on the stick"
else
    rm -f "$PIP_HERE"
    got="$BOOT_TMP/$PIP_WHEEL"
    if [ -f "$WHEELS/$PIP_WHEEL" ]; then
        info "copying it from wheels/"; cp "$WHEELS/$PIP_WHEEL" "$got"
    elif "$PREP_PYTHON" -I -B -m pip --version >/dev/null 2>&1; then
        info "downloading it with this computer's pip"
        "$PREP_PYTHON" -I -B -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir \
            --dest "$BOOT_TMP" "pip==$PIP_VERSION" || die "could not download pip from PyPI. Is the internet reachable? (Offline: put $PIP_WHEEL into wheels/.)"
    elif command -v curl >/dev/null 2>&1; then
        info "downloading it with curl"
        curl -fsSL --retry 2 -o "$got" "$PIP_URL" || die "could not download pip from PyPI. Is the internet reachable? (Offline: put $PIP_WHEEL into wheels/.)"
    else
        info "downloading it with python"
        "$PREP_PYTHON" -I -B -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$PIP_URL" "$got" \
            || die "could not download pip from PyPI. Is the internet reachable? (Offline: put $PIP_WHEEL into wheels/.)"
    fi
    [ "$(sha256_of "$got")" = "$PIP_SHA256" ] || die "$PIP_WHEEL does not have the pinned sha256; refusing to use it."
    mv "$got" "$PIP_HERE"
fi
# A wheel is a zip, and pip runs straight from it: no pip needed on this computer.
PIP=("$PREP_PYTHON" -I -B "$PIP_HERE/pip")

INDEX_ARGS=()
if [ "$USE_WHEELS" = auto ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    INDEX_ARGS=(--no-index --find-links "$WHEELS")
    info "wheels/ found: installing offline from it"
fi

# ---------------------------------------------------------------------------------------
say "Step 4/6: installing the finder's packages onto the stick"
req_hash=$(sha256_of "$HERE/requirements.txt")
install_for() {  # $1 = python version like 3.12
    local v="$1" tag dest stamp
    tag="cp${v/./}-$OS_NAME-$ARCH"
    dest="$PACKAGES/$tag"
    stamp="pip=$PIP_VERSION requirements=$req_hash target=$TARGET dlib=$WITH_DLIB"
    if [ -f "$dest/.stick-stamp" ] && [ "$(cat "$dest/.stick-stamp")" = "$stamp" ]; then
        info "Python $v: already installed in python-packages/$tag"
        return 0
    fi
    info "Python $v: installing into python-packages/$tag (this takes a minute or two)"
    local target_args=()
    while IFS= read -r line; do target_args+=("$line"); done < <(
        cd "$HERE" && "$PREP_PYTHON" -E -s -B -m facefinder.wheels --platform "$TARGET" --python "$v" --print-pip-args)
    rm -rf "$dest.new"
    # --no-compile: bytecode is made at first run into cache/pycache (see facefinder/stick.py).
    "${PIP[@]}" install --quiet --no-cache-dir --no-compile --root-user-action=ignore --target "$dest.new" \
        ${INDEX_ARGS[@]+"${INDEX_ARGS[@]}"} "${target_args[@]}" \
        -r "$HERE/requirements.txt" "pip==$PIP_VERSION" \
        || die "installing the packages for Python $v failed (see pip's message above). No internet? Or, offline, wheels/ lacks wheels for $TARGET / Python $v: python -m facefinder.wheels --platform $TARGET --python $v"
    if [ "$WITH_DLIB" = 1 ]; then
        if "${PIP[@]}" install --quiet --no-cache-dir --no-compile --root-user-action=ignore --no-deps --target "$dest.new" \
            ${INDEX_ARGS[@]+"${INDEX_ARGS[@]}"} "${target_args[@]}" -r "$HERE/requirements-dlib.txt"; then
            info "Python $v: optional dlib model's package installed"
        else
            info "Python $v: no dlib-bin wheel for $TARGET; the optional dlib model is left out (the default model is unaffected)"
        fi
    fi
    rm -rf "$dest"
    mv "$dest.new" "$dest"
    printf '%s\n' "$stamp" > "$dest/.stick-stamp"
}
for v in $PYTHONS; do install_for "$v"; done

# ---------------------------------------------------------------------------------------
say "Step 5/6: writing finder.sh"
cat > "$HERE/finder.sh" <<'LAUNCHER'
#!/usr/bin/env bash
# Run the face finder from this stick with the computer's own python3 and the packages
# on the stick. Written by bootstrap.sh. Usage: bash finder.sh PHOTOS_FOLDER [options]
# (no folder: a short demo). Works wherever the stick is mounted; writes only to the stick.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
candidates="${FINDER_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10"
candidates="$candidates /usr/local/bin/python3 /opt/homebrew/bin/python3"
for v in 13 12 11 10; do
    candidates="$candidates /Library/Frameworks/Python.framework/Versions/3.$v/bin/python3"
done
PY="" PKG="" seen=""
for cand in $candidates; do
    path=$(command -v "$cand" 2>/dev/null) || continue
    if [ "$(uname -s)" = Darwin ] && [ "$path" = /usr/bin/python3 ] && ! xcode-select -p >/dev/null 2>&1; then
        continue  # Apple's stub would pop up an installer dialog
    fi
    tag=$("$path" -I -B -c 'import sys, platform; print("cp%d%d-%s-%s" % (sys.version_info[0], sys.version_info[1], sys.platform, platform.machine()))' 2>/dev/null) || continue
    seen="$seen $tag"
    if [ -d "$HERE/python-packages/$tag" ]; then PY="$path"; PKG="$HERE/python-packages/$tag"; break; fi
done
if [ -z "$PY" ]; then
    echo "finder: no usable python3 found for the packages on this stick." >&2
    echo "  this computer has:${seen:- no python3 at all}" >&2
    echo "  the stick has: $(cd "$HERE/python-packages" 2>/dev/null && ls -d cp* 2>/dev/null | tr '\n' ' ')" >&2
    echo "  Install python3 (3.10-3.13) here, or prepare the stick for this Python with bootstrap.sh." >&2
    exit 2
fi
unset PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE
export PYTHONPATH="$PKG:$HERE" PYTHONNOUSERSITE=1
# Bytecode goes on the stick (never next to the host's stdlib), or nowhere when read-only.
if mkdir -p "$HERE/cache/pycache" 2>/dev/null && [ -w "$HERE/cache/pycache" ]; then
    export PYTHONPYCACHEPREFIX="$HERE/cache/pycache"
else
    export PYTHONDONTWRITEBYTECODE=1
fi
exec "$PY" -s "$HERE/finder.py" "$@"
LAUNCHER
chmod +x "$HERE/finder.sh" 2>/dev/null || true  # FAT/exFAT sticks have no exec bits: use 'bash finder.sh'
info "finder.sh written (run it as: bash finder.sh /path/to/photos)"

# ---------------------------------------------------------------------------------------
say "Step 6/6: fetching and checking the models"
if [ "$SKIP_MODELS" = 1 ]; then
    info "skipped (--skip-models)"
else
    FINDER_PYTHON="$PREP_PYTHON" bash "$HERE/finder.sh" --fetch-models \
        || die "fetching the models failed (see above). No internet? Run this again when connected."
    if [ "$WITH_DLIB" = 1 ]; then
        FINDER_PYTHON="$PREP_PYTHON" bash "$HERE/finder.sh" --fetch-models --model dlib \
            || info "the optional dlib model could not be fetched; the default model works without it"
    fi
fi

du_mb() { du -sk "$1" 2>/dev/null | awk '{print int($1 / 1024)}'; }
say "Done. The stick is ready: packages $(du_mb "$PACKAGES") MB, models $(du_mb "$HERE/models" || echo 0) MB."
info "On the other computer: open a terminal and run"
info "    bash \"<stick>/finder.sh\" /path/to/photos"
