#!/usr/bin/env bash
# Idempotent setup for development and CI on Debian/Ubuntu: PostgreSQL + PostGIS (system packages),
# a Python >= 3.11 virtualenv in .venv and the project installed in it (editable, with dev tools).
# Prints nothing unless something fails. Re-running it is cheap: every step checks before it acts.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
STAMP=$VENV/.smartcode-setup-stamp
# The range pyproject.toml's requires-python allows.
PY_OK='import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'

LOG=$(mktemp "${TMPDIR:-/tmp}/smartcode-setup.XXXXXX")
trap 'rm -f "$LOG"' EXIT

fail() {
    echo "setup: $*" >&2
    exit 1
}

# Run a command silently; if it fails, show what it printed and stop.
quietly() {
    if ! "$@" >"$LOG" 2>&1; then
        echo "setup: command failed: $*" >&2
        tail -n 60 "$LOG" >&2
        exit 1
    fi
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        fail "missing system packages ($*) and apt-get is not available: install PostgreSQL with PostGIS" \
            "with your package manager"
    if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
        fail "need root or sudo to install system packages; run as root: apt-get install $*"
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -qq)
    # Package lists are refreshed only when something is actually missing (a fresh machine has none).
    if [ "$APT_UPDATED" -eq 0 ]; then
        quietly as_root "${apt[@]}" update
        APT_UPDATED=1
    fi
    quietly as_root "${apt[@]}" install -y --no-install-recommends "$@"
}

# --- PostgreSQL server + PostGIS (same discovery rules as registry/embedded.py) -------------------

pg_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$dir" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    fi
    # Newest Debian-style install first (/usr/lib/postgresql/<major>/bin).
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -V -r); do
        if [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

bindir=$(pg_bindir || true)
if [ -z "$bindir" ]; then
    apt_install postgresql postgresql-postgis
    bindir=$(pg_bindir) || fail "PostgreSQL server binaries still not found after installing them"
fi
major=$("$bindir/postgres" -V | sed -E 's/.*\(PostgreSQL\) ([0-9]+).*/\1/')
sharedir=""
if [ -x "$bindir/pg_config" ]; then
    sharedir=$("$bindir/pg_config" --sharedir 2>/dev/null || true)
fi
sharedir=${sharedir:-/usr/share/postgresql/$major}
if [ ! -f "$sharedir/extension/postgis.control" ]; then
    # The version-specific package: the postgresql-postgis metapackage targets only the distro default.
    apt_install "postgresql-$major-postgis-3"
    [ -f "$sharedir/extension/postgis.control" ] ||
        fail "PostGIS for PostgreSQL $major still missing ($sharedir/extension/postgis.control)"
fi

# --- GDAL command-line tools: the OGC API - Features tests read the service as QGIS would -----------

if ! command -v ogrinfo >/dev/null 2>&1 || ! command -v ogr2ogr >/dev/null 2>&1; then
    apt_install gdal-bin
fi

# --- Label printing: the CJK font printed labels embed (qr/fonts.py looks for it here) -------------

if [ ! -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
    apt_install fonts-noto-cjk
fi

# --- The browser tests (scan page, map): Playwright drives the system chromium (`playwright install`
# needs a download these machines lack); the CJK font above renders the pages' Chinese -------------

if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium
fi

# --- Python virtualenv ----------------------------------------------------------------------------

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3 python3.12 python3.11; do
        if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c "$PY_OK" 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

venv_ok() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/pip" ] && "$VENV/bin/python" -c "$PY_OK" 2>/dev/null
}

if ! venv_ok; then
    if ! python=$(find_python); then
        found=$(python3 --version 2>&1 || echo "no python3 on PATH")
        fail "Python >= 3.11 and < 3.13 is required (found: $found); install it or set PYTHON=/path/to/python3.11"
    fi
    rm -rf "$VENV"
    if ! "$python" -m venv "$VENV" >"$LOG" 2>&1; then
        # Debian's Python ships venv/ensurepip separately.
        rm -rf "$VENV"
        apt_install python3-venv
        quietly "$python" -m venv "$VENV"
    fi
fi

# pip runs only when pyproject.toml (or the interpreter) changed since the last successful install.
want=$({ sha256sum pyproject.toml; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ] || [ ! -x "$VENV/bin/smartcode" ]; then
    quietly "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$STAMP"
fi
