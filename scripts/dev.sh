#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine:
#   bash scripts/dev.sh demo   install everything, then run a real generation
#                              against the built-in emulator and write an image
#   bash scripts/dev.sh test   install everything, then run the whole suite:
#                              C tests, valgrind, fuzz corpus replay, pytest,
#                              and pytest again with the extension under ASan+UBSan
#   bash scripts/dev.sh setup  only install (system packages, .venv, the package)
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="build-essential pkg-config libcurl4-openssl-dev libcjson-dev libssl-dev libcmocka-dev valgrind clang-format python3-venv python3-dev"
VENV="${UNI1_VENV:-.venv}"
PY="${PYTHON:-python3}"

log() { printf '\n== %s\n' "$*" >&2; }

install_debs() {
    local missing=()
    for p in $DEBS; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

setup() {
    install_debs
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating the virtual environment $VENV"
        "$PY" -m venv "$VENV"
    fi
    log "installing scenario_uni1 (builds the C extension)"
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
    UNI1_WERROR=1 "$VENV/bin/python" -m pip install -q -e '.[test]'
}

demo() {
    setup
    mkdir -p renders
    log "generating an image against the built-in emulator"
    "$VENV/bin/scenario-uni1" generate --offline --aspect-ratio 16:9 -o renders \
        "A fantasy landscape at dawn, misty mountains, a river of light"
    ls -l renders
}

run_tests() {
    setup
    export PATH="$PWD/$VENV/bin:$PATH"
    log "style: clang-format and ruff"
    make format-check RUFF="$PWD/$VENV/bin/ruff"
    log "C tests of the core (cmocka)"
    make ctest
    log "C tests under valgrind memcheck"
    make valgrind
    log "fuzz targets: corpus replay under ASan+UBSan"
    make fuzz-replay
    log "pytest against the emulator"
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
    log "pytest with the extension built with ASan+UBSan"
    make asan PYTHON="$PWD/$VENV/bin/python"
    log "all layers passed"
}

case "${1:-}" in
    demo) demo ;;
    test) run_tests ;;
    setup) setup ;;
    *) echo "usage: bash scripts/dev.sh demo|test|setup" >&2; exit 2 ;;
esac
