# Sourced by run_all.sh and run_tests.sh: create or reuse the virtual environment, install
# cmakit with the tested dependency versions (requirements.lock), and make sure WordNet is
# readable. Idempotent: a second run only checks a stamp and returns in a second or two.
#
# Variables: CMAKIT_VENV (default: .venv in the project), CMAKIT_PYTHON (interpreter used to
# create the venv; default: python3).

set -euo pipefail
CMAKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CMAKIT_VENV:-$CMAKIT_ROOT/.venv}"
PY_BOOT="${CMAKIT_PYTHON:-python3}"

log() { printf '[cmakit setup] %s\n' "$*" >&2; }

if ! "$PY_BOOT" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    log "Python 3.10 or newer is needed; '$PY_BOOT' is $("$PY_BOOT" --version 2>&1 || echo missing)."
    log "Set CMAKIT_PYTHON to a newer interpreter, e.g. CMAKIT_PYTHON=python3.11 bash run_tests.sh"
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment in $VENV"
    "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"

stamp="$VENV/.cmakit-install-stamp"
# The ranges are in pyproject.toml, the exact tested versions in requirements.lock (constraints).
want="$(cat "$CMAKIT_ROOT/pyproject.toml" "$CMAKIT_ROOT/requirements.lock" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing cmakit and its tested dependencies (first run: a few minutes)"
    "$PY" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$PY" -m pip install --quiet --disable-pip-version-check \
        -c "$CMAKIT_ROOT/requirements.lock" -e "$CMAKIT_ROOT[dev]"
    echo "$want" > "$stamp"
else
    log "environment up to date ($VENV)"
fi

# WordNet 3.0 for negative-label mining: nltk's data, or Debian's wordnet-base files.
if ! "$PY" -c 'import nltk; nltk.data.find("corpora/wordnet")' >/dev/null 2>&1 \
    && [ ! -f /usr/share/wordnet/data.noun ]; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        log "installing WordNet (Debian package wordnet-base)"
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null
    elif "$PY" -m nltk.downloader -q wordnet >/dev/null 2>&1; then
        log "installed WordNet through nltk's downloader"
    else
        log "WordNet is missing. Install it with one of:"
        log "  sudo apt-get install wordnet-base"
        log "  $PY -m nltk.downloader wordnet"
        exit 1
    fi
fi

# Headless Chromium for the embedding explorer's browser test (tests/test_explorer.py skips
# with the reason when none is found): Debian's package, only as root and only when missing.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
    && ! command -v google-chrome >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        log "installing Chromium for the explorer's browser test (Debian package chromium)"
        if ! { apt-get update -qq >/dev/null \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }; then
            log "could not install Chromium; the browser test will be skipped"
        fi
    else
        log "no Chromium found; the explorer's browser test will be skipped (sudo apt-get install chromium)"
    fi
fi

export CMAKIT_ROOT
export PATH="$VENV/bin:$PATH"
