#!/usr/bin/env bash
# Prints the path of a CPython 3.13 interpreter, building it once if needed.
#
# bpy (Blender as a Python module) is published for exactly one CPython
# version, 3.13 for Blender 5.x; Debian 12 ships 3.11. We build Debian's own
# 3.13 source tarball (checked against the sha256 in trixie's Sources) into a
# cache directory that later runs reuse. No PGO, no LTO, no test suite: the
# interpreter only has to run bpy and our wheel, and CI time is precious (nor
# the test modules: --disable-test-modules, which also leaves Lib/test out).
#
#   bash scripts/python313.sh      -> ~/.cache/scenario_uni1/python3.13/bin/python3.13
#   UNI1_PY313_PREFIX=/some/dir bash scripts/python313.sh
set -euo pipefail

VERSION=3.13.5
SHA256=93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640
URL="http://deb.debian.org/debian/pool/main/p/python3.13/python3.13_${VERSION}.orig.tar.xz"
PREFIX="${UNI1_PY313_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/scenario_uni1/python3.13}"
PYBIN="$PREFIX/bin/python3.13"
# Changing these rebuilds the cached interpreter (they are kept in a stamp file).
CONFIGURE_FLAGS="--with-ensurepip=install --disable-test-modules"
STAMP="$VERSION $SHA256 $CONFIGURE_FLAGS"
# Headers the stdlib modules we need are built against (ssl for pip, ctypes,
# lzma/bz2/zlib for wheels and archives, sqlite3 for the journal).
DEBS="build-essential curl xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev libexpat1-dev"

log() { printf '== %s\n' "$*" >&2; }

healthy() {
    [ -x "$PYBIN" ] && [ "$(cat "$PREFIX/.uni1-build" 2>/dev/null)" = "$STAMP" ] &&
        "$PYBIN" -c 'import ssl, ctypes, lzma, bz2, zlib, sqlite3, venv, ensurepip' 2>/dev/null
}

# The Debian packages the build needs, for a caller that installs them with
# its own (one apt run at a time: dpkg has one lock).
if [ "${1:-}" = "--debs" ]; then
    echo "$DEBS"
    exit 0
fi

if healthy; then
    echo "$PYBIN"
    exit 0
fi

missing=()
for p in $DEBS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "downloading CPython $VERSION source (Debian)"
curl -fsSL --retry 3 -o "$work/src.tar.xz" "$URL"
echo "$SHA256  $work/src.tar.xz" | sha256sum -c --quiet -
tar -xJf "$work/src.tar.xz" -C "$work"
src="$(find "$work" -maxdepth 1 -type d -name 'Python-*' | head -n1)"
log "building CPython $VERSION into $PREFIX (no PGO, no tests)"
(
    cd "$src"
    # shellcheck disable=SC2086
    ./configure -q --prefix="$PREFIX" $CONFIGURE_FLAGS >"$work/configure.log" 2>&1 ||
        { tail -n 40 "$work/configure.log" >&2; exit 1; }
    make -s -j"${UNI1_PY313_JOBS:-2}" >"$work/make.log" 2>&1 || { tail -n 60 "$work/make.log" >&2; exit 1; }
    rm -rf "$PREFIX"
    make -s altinstall >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; exit 1; }
)
echo "$STAMP" >"$PREFIX/.uni1-build"
healthy || { echo "the built python3.13 lacks a required stdlib module" >&2; exit 1; }
log "CPython $VERSION built in $((SECONDS - start)) s"
echo "$PYBIN"
