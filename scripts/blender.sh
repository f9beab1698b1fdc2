#!/usr/bin/env bash
# The Blender extension of examples/blender, built and tested in real Blender.
#
#   bash scripts/blender.sh extension [DIR]  build the wheel into examples/blender/wheels,
#                                            then the extension .zip into DIR (default dist/)
#                                            with Blender's own tool (`blender --command
#                                            extension build`, else bpy's copy of it)
#   bash scripts/blender.sh venv             only make the cached venv with bpy (and CPython 3.13)
#   bash scripts/blender.sh test             run tests/blender in real Blender (bpy from PyPI)
#
# bpy is Blender as a Python module, published for one CPython version (3.13 for
# Blender 5.x): scripts/python313.sh provides that interpreter, and the venv with
# bpy is kept in the cache directory next to it and reused while bpy's version
# is the same (bpy is ~400 MB to download, ~900 MB installed).
set -euo pipefail
cd "$(dirname "$0")/.."

BPY_VERSION=5.2.3
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/scenario_uni1"
BVENV="${UNI1_BLENDER_VENV:-$CACHE/blender-$BPY_VERSION-venv}"
# The project's own build tooling (setup.py needs setuptools and a C compiler):
# the development venv builds the abi3 wheel, which CPython 3.13 loads as is.
BUILD_PY="${UNI1_BUILD_PYTHON:-${UNI1_VENV:-.venv}/bin/python}"

log() { printf '== %s\n' "$*" >&2; }

# pip, quiet, without the notes this machine's pip configuration prints about
# local index directories it does not have.
pip_quiet() {
    local rc=0
    "$@" -q --disable-pip-version-check 2> >(grep -v "^WARNING: Location" >&2) || rc=$?
    return $rc
}

blender_venv() {
    if "$BVENV/bin/python" - "$BPY_VERSION" 2>/dev/null <<'PYEOF'; then
import importlib.metadata as md, sys
assert md.version("bpy") == sys.argv[1]
for name in ("numpy", "requests", "cattrs", "zstandard", "pytest"):
    md.version(name)
PYEOF
        return 0
    fi
    local py start=$SECONDS
    py="$(bash scripts/python313.sh)"
    log "creating $BVENV: bpy $BPY_VERSION and what it needs at run time"
    rm -rf "$BVENV"
    "$py" -m venv "$BVENV"
    # bpy's runtime dependencies first (it also lists cython, a build tool it
    # never imports); bpy itself last with --no-deps, so pip has nothing to
    # resolve or complain about.
    pip_quiet "$BVENV/bin/python" -m pip install 'numpy>=2.2,<3' requests cattrs zstandard 'pytest>=7'
    pip_quiet "$BVENV/bin/python" -m pip install --no-deps --no-compile "bpy==$BPY_VERSION"
    "$BVENV/bin/python" -c 'import bpy' >/dev/null
    log "Blender venv ready in $((SECONDS - start)) s"
}

build_wheel() {
    local dir="$1"
    mkdir -p "$dir"
    rm -f "$dir"/scenario_uni1-*.whl
    pip_quiet "$BUILD_PY" -m pip wheel --no-deps -w "$dir" .
    ls "$dir"/scenario_uni1-*.whl
}

extension() {
    local out="${1:-dist}" wheels=examples/blender/wheels
    build_wheel "$wheels" >/dev/null
    mkdir -p "$out"
    if command -v blender >/dev/null; then
        blender --command extension build --source-dir examples/blender --output-dir "$out"
    else
        blender_venv
        local tool
        tool="$("$BVENV/bin/python" -c 'import bpy, os; print(os.path.join(bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py"))')"
        "$BVENV/bin/python" "$tool" build --source-dir examples/blender --output-dir "$out"
    fi
}

run_tests() {
    local start=$SECONDS tmp
    blender_venv
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    log "building the wheel the extension bundles"
    UNI1_WHEEL="$(build_wheel "$tmp")"
    export UNI1_WHEEL
    log "tests/blender in bpy $BPY_VERSION"
    # -P: the source tree stays off sys.path; the add-on imports the wheel
    # Blender installed. --confcutdir: the main suite's conftest stays out.
    "$BVENV/bin/python" -P -m pytest -p no:cacheprovider --confcutdir=tests/blender tests/blender
    log "Blender layer: $((SECONDS - start)) s"
}

case "${1:-}" in
    extension) extension "${2:-}" ;;
    venv) blender_venv ;;
    test) run_tests ;;
    *) echo "usage: bash scripts/blender.sh extension [DIR] | venv | test" >&2; exit 2 ;;
esac
