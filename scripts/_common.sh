# shellcheck shell=bash
# Shared helpers for scripts/run, scripts/test and scripts/pg-test-server.
#
# Source it from a script in scripts/ (it does not change options of its own
# beyond what the caller set; every script runs with `set -euo pipefail`):
#
#     . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/_common.sh"
#
# Environment knobs (all optional):
#   CW_PYTHON        python interpreter to build .venv with (default: newest python3.x >= 3.11)
#   CW_VENV          virtual environment directory (default: <repo>/.venv)
#   CW_FORCE_INSTALL=1  reinstall the project even if the stamp says it is current
#   CW_QUIET=1       less chatter from helpers (banners still print)

# Repository root: the parent of the directory holding this file.
CW_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
CW_VENV="${CW_VENV:-$CW_ROOT/.venv}"
CW_MIN_PY_MINOR=11
export PIP_DISABLE_PIP_VERSION_CHECK=1

# ---------------------------------------------------------------- output
if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    _cw_bold=$'\033[1m' _cw_red=$'\033[31m' _cw_yellow=$'\033[33m' _cw_reset=$'\033[0m'
else
    _cw_bold='' _cw_red='' _cw_yellow='' _cw_reset=''
fi

# cw_step N TOTAL MESSAGE...   -> "==> [N/TOTAL] MESSAGE"
cw_step() {
    local n=$1 total=$2
    shift 2
    printf '%s==> [%s/%s] %s%s\n' "$_cw_bold" "$n" "$total" "$*" "$_cw_reset" >&2
}
cw_banner() { printf '%s==> %s%s\n' "$_cw_bold" "$*" "$_cw_reset" >&2; }
cw_info() { printf '    %s\n' "$*" >&2; }
cw_warn() { printf '%swarning:%s %s\n' "$_cw_yellow" "$_cw_reset" "$*" >&2; }
# cw_die MESSAGE [HINT...]: print an error plus what to do next, exit 1.
cw_die() {
    printf '%serror:%s %s\n' "$_cw_red" "$_cw_reset" "$1" >&2
    shift
    local line
    for line in "$@"; do printf '       %s\n' "$line" >&2; done
    exit 1
}

cw_have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- root / apt
cw_is_root() { [[ $(id -u) -eq 0 ]]; }

# cw_as_root CMD...: run CMD as root (directly, or through sudo when available).
cw_as_root() {
    if cw_is_root; then
        "$@"
    elif cw_have sudo; then
        sudo "$@"
    else
        cw_die "need root to run: $*" \
            "run this script as root, install sudo, or run the command above yourself and retry"
    fi
}

cw_can_be_root() { cw_is_root || cw_have sudo; }

_cw_apt_updated=0
_cw_apt_update() {
    [[ $_cw_apt_updated -eq 1 ]] && return 0
    cw_info "apt-get update"
    cw_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 ||
        cw_die "apt-get update failed" "check that the Debian package mirrors are reachable, then rerun"
    _cw_apt_updated=1
}

# cw_pkg_installed PKG: true when the Debian package PKG is installed.
cw_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# cw_apt_install PKG...: install the Debian packages not yet installed (output on stderr).
# Runs `apt-get update` only when needed: when the package lists are empty,
# when a package has no install candidate, or when an install attempt fails.
cw_apt_install() {
    local missing=() p
    for p in "$@"; do cw_pkg_installed "$p" || missing+=("$p"); done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    cw_have apt-get || cw_die "missing system packages: ${missing[*]} (and no apt-get here)" \
        "install them with your system's package manager, then rerun"
    cw_can_be_root || cw_die "missing system packages: ${missing[*]}" \
        "run as root:  apt-get install -y ${missing[*]}  then rerun"
    cw_info "installing Debian packages: ${missing[*]}"
    local need_update=0
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        need_update=1
    else
        for p in "${missing[@]}"; do
            if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [^(]'; then
                need_update=1
                break
            fi
        done
    fi
    [[ $need_update -eq 1 ]] && _cw_apt_update
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends
        -o Dpkg::Use-Pty=0 "${missing[@]}")
    # apt's output goes to stderr: callers may capture stdout (pg-test-server prints a URL).
    if ! cw_as_root "${apt[@]}" >&2; then
        if [[ $_cw_apt_updated -eq 0 ]]; then
            cw_warn "apt-get install failed; refreshing package lists and retrying once"
            _cw_apt_update
            cw_as_root "${apt[@]}" >&2 && return 0
        fi
        cw_die "could not install Debian packages: ${missing[*]}" \
            "try by hand:  apt-get update && apt-get install -y ${missing[*]}"
    fi
}

# ---------------------------------------------------------------- python
# _cw_py_ok PY: PY runs and is >= 3.11
_cw_py_ok() {
    "$1" -c "import sys; sys.exit(0 if sys.version_info >= (3, $CW_MIN_PY_MINOR) else 1)" \
        >/dev/null 2>&1
}

# cw_find_python: print the interpreter to build the venv with.
cw_find_python() {
    local c
    if [[ -n "${CW_PYTHON:-}" ]]; then
        _cw_py_ok "$CW_PYTHON" || cw_die "CW_PYTHON=$CW_PYTHON is not a Python >= 3.$CW_MIN_PY_MINOR"
        printf '%s\n' "$CW_PYTHON"
        return 0
    fi
    for c in python3.13 python3.12 python3.11 python3; do
        if cw_have "$c" && _cw_py_ok "$c"; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

# cw_ensure_python: print a usable python >= 3.11 with a working venv module,
# installing Debian's python3 + python3-venv when they are missing and we can.
cw_ensure_python() {
    local py
    if ! py=$(cw_find_python); then
        if cw_have apt-get && cw_can_be_root; then
            cw_info "no Python >= 3.$CW_MIN_PY_MINOR found; installing Debian python3 + python3-venv"
            cw_apt_install python3 python3-venv
        fi
        py=$(cw_find_python) || cw_die "Python 3.$CW_MIN_PY_MINOR or newer is required but was not found" \
            "on Debian/Ubuntu:  sudo apt-get install python3 python3-venv" \
            "or point CW_PYTHON at an interpreter >= 3.$CW_MIN_PY_MINOR, then rerun"
    fi
    # Debian splits ensurepip (needed by `python -m venv`) into python3.X-venv.
    if ! "$py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        local ver
        ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        if [[ "$py" == /usr/bin/* ]] && cw_have apt-get && cw_can_be_root; then
            cw_info "the venv module of $py is missing; installing python$ver-venv"
            cw_apt_install "python$ver-venv"
        fi
        "$py" -c 'import ensurepip, venv' >/dev/null 2>&1 ||
            cw_die "$py cannot create virtual environments (module venv/ensurepip missing)" \
                "on Debian/Ubuntu:  sudo apt-get install python3 python3-venv  (or python$ver-venv)"
    fi
    printf '%s\n' "$py"
}

# ---------------------------------------------------------------- bootstrap
_cw_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# cw_bootstrap: make sure .venv exists and holds the project installed with
# its [dev] extras; put .venv/bin first on PATH. Fast when nothing changed:
# the install is skipped while the stamp matches sha256(pyproject.toml).
cw_bootstrap() {
    local total=3 py stamp want have
    cw_step 1 $total "checking Python (>= 3.$CW_MIN_PY_MINOR) and the virtual environment"
    if [[ -x "$CW_VENV/bin/python" ]] && _cw_py_ok "$CW_VENV/bin/python" &&
        "$CW_VENV/bin/python" -m pip --version >/dev/null 2>&1; then
        cw_info "using $CW_VENV ($("$CW_VENV/bin/python" -V 2>&1))"
    else
        if [[ -e "$CW_VENV" ]]; then
            cw_warn "$CW_VENV is unusable (broken or made by another Python); recreating it"
            rm -rf "$CW_VENV"
        fi
        py=$(cw_ensure_python)
        cw_info "creating $CW_VENV with $py ($("$py" -V 2>&1))"
        "$py" -m venv "$CW_VENV" || cw_die "could not create the virtual environment $CW_VENV" \
            "on Debian/Ubuntu:  sudo apt-get install python3-venv  then rerun"
        cw_info "upgrading pip inside the venv"
        "$CW_VENV/bin/python" -m pip install -q --upgrade pip ||
            cw_warn "could not upgrade pip; continuing with the bundled one"
    fi

    stamp="$CW_VENV/.callwatch-installed.sha256"
    want=$(_cw_sha256 "$CW_ROOT/pyproject.toml")
    have=$(cat "$stamp" 2>/dev/null || true)
    if [[ "$want" == "$have" && -x "$CW_VENV/bin/callwatch" && -x "$CW_VENV/bin/callwatch-sim" && -z "${CW_FORCE_INSTALL:-}" ]]; then
        cw_step 2 $total "Python packages up to date (pyproject.toml unchanged)"
    else
        if [[ -z "$have" ]]; then
            cw_step 2 $total "installing Python packages (first run: a few minutes; ~1 GB incl. the Whisper model)"
        else
            cw_step 2 $total "pyproject.toml changed: updating Python packages"
        fi
        rm -f "$stamp"
        local pip_progress=()
        [[ -t 1 ]] || pip_progress=(--progress-bar off)
        if ! (cd "$CW_ROOT" && "$CW_VENV/bin/python" -m pip install "${pip_progress[@]}" -e '.[dev]'); then
            cw_die "pip install -e '.[dev]' failed (see the messages above)" \
                "fix the cause (network to PyPI? a dependency pin in pyproject.toml?) and rerun;" \
                "to start from scratch:  rm -rf $CW_VENV"
        fi
        # The `vcon` reference library (tests load our vCon export with it) declares test tools
        # (pytest<9, pytest-cov, pytest-mock) as install requirements; what it imports is in
        # the [dev] extras, so it goes in without its declared dependencies.
        if ! "$CW_VENV/bin/python" -m pip install "${pip_progress[@]}" --no-deps 'vcon==0.3.10'; then
            cw_die "pip install vcon==0.3.10 failed (see the messages above)" \
                "check the network to PyPI and rerun"
        fi
        printf '%s\n' "$want" >"$stamp"
    fi

    cw_step 3 $total "environment ready"
    export VIRTUAL_ENV="$CW_VENV"
    export PATH="$CW_VENV/bin:$PATH"
}

# ---------------------------------------------------------------- misc
# cw_free_port: print a TCP port on 127.0.0.1 that nothing listens on now.
cw_free_port() {
    local py
    for py in "$CW_VENV/bin/python" python3 python; do
        if cw_have "$py" || [[ -x "$py" ]]; then
            "$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return 0
        fi
    done
    # No python at all: probe a few ports with bash's /dev/tcp.
    local port
    for port in $(seq 54320 54420); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# cw_wait_port HOST PORT SECONDS [PID]: wait until HOST:PORT accepts TCP
# connections; fail early if PID (when given) exits.
cw_wait_port() {
    local host=$1 port=$2 secs=$3 pid=${4:-} i
    for ((i = 0; i < secs * 5; i++)); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 2
        fi
        sleep 0.2
    done
    return 1
}
