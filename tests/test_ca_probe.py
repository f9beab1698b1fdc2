"""CA certificates found at run time, in the file layouts of other systems.

A client given no ca_bundle, SSL_CERT_FILE or CURL_CA_BUNDLE probes the known
bundle paths once, honours SSL_CERT_DIR, falls back to certifi, and says which
paths it tried when it found none (csrc/core/cacerts.c). Each case runs in a
child process inside a private mount namespace (unshare --mount) whose /etc
is the real one with ssl/ and pki/ replaced: the layout of Debian, RHEL,
SUSE, Alpine or macOS, with this test's CA as the system bundle. The HTTPS
emulator runs in the child too; a round trip covers the API and the CDN.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import trustme

from scenario_uni1 import _core

HERE = Path(__file__).resolve().parent
CHILD = HERE / "_ca_layout_child.py"

# The paths the core probes, in its order (the contract of the TLS error).
PROBED = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
]

# Each layout: paths under /etc -> "CA" (the test CA's PEM), "OTHER" (a CA
# that did not sign the emulator's certificate), other text, or "->target" /
# "dir->target" (a symlink to a file / a directory).
LAYOUTS = {
    "debian": {
        "ssl/certs/ca-certificates.crt": "CA",
        "ssl/certs/ISRG_Root_X1.pem": "OTHER",
        "ssl/openssl.cnf": "",
    },
    "rhel": {
        "pki/ca-trust/extracted/pem/tls-ca-bundle.pem": "CA",
        "pki/tls/certs/ca-bundle.crt": "->../../ca-trust/extracted/pem/tls-ca-bundle.pem",
        "pki/tls/openssl.cnf": "",
        "ssl/certs": "dir->../pki/tls/certs",
    },
    "rhel-extracted-only": {"pki/ca-trust/extracted/pem/tls-ca-bundle.pem": "CA"},
    "suse": {"ssl/ca-bundle.pem": "CA", "ssl/certs/other.pem": "OTHER"},
    "alpine": {
        "ssl/certs/ca-certificates.crt": "CA",
        "ssl/cert.pem": "->certs/ca-certificates.crt",
    },
    "macos": {"ssl/cert.pem": "CA", "ssl/openssl.cnf": ""},
    "none": {"ssl/openssl.cnf": ""},
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca-pki")
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(d / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(d / "server.pem"))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(d / "server.pem"), append=True)
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {
        "dir": d,
        "CA": ca.cert_pem.bytes().decode(),
        "OTHER": other.cert_pem.bytes().decode(),
        "ca_pem": d / "ca.pem",
    }


def _unshare() -> list[str]:
    if shutil.which("unshare") is None:
        pytest.fail("these tests need util-linux's unshare (Debian: util-linux)")
    cmd = ["unshare", "--mount"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    return cmd


def _build_etc(root: Path, layout: dict[str, str], pki) -> None:
    """root/etc: every entry of /etc (through root/oldetc, a bind mount of the
    real /etc) but ssl and pki, which hold the layout instead."""
    etc = root / "etc"
    etc.mkdir()
    (root / "oldetc").mkdir()
    for name in os.listdir("/etc"):
        if name not in ("ssl", "pki"):
            (etc / name).symlink_to(root / "oldetc" / name)
    for rel, what in layout.items():
        path = etc / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if "->" in what:
            path.symlink_to(what.split("->", 1)[1])
        else:
            path.write_text(pki.get(what, what))


def run_layout(tmp_path, pki, layout: str, steps, certifi=None, env=None) -> dict:
    root = tmp_path / layout
    root.mkdir()
    _build_etc(root, LAYOUTS[layout], pki)
    config = root / "config.json"
    config.write_text(
        json.dumps(
            {
                "server_cert": str(pki["dir"] / "server.pem"),
                "server_key": str(pki["dir"] / "server.key"),
                "certifi": certifi,
                "steps": steps,
            }
        )
    )
    child_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "SSL_CERT_DIR")
        and not k.lower().endswith("_proxy")
    }
    child_env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    child_env.update(env or {})
    script = 'mount --bind /etc "$1" && mount --bind "$2" /etc && shift 2 && exec "$@"'
    cmd = [*_unshare(), "sh", "-c", script, "sh", str(root / "oldetc"), str(root / "etc")]
    cmd += [sys.executable, str(CHILD), str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["core"] == os.path.realpath(_core.__file__)  # the build under test
    # The layout is what the child saw: the namespace took effect.
    expected = sorted(rel for rel, what in LAYOUTS[layout].items() if not what.startswith("dir->"))
    assert out["etc"] == expected, out["etc"]
    return out


@pytest.mark.parametrize(
    "layout", ["debian", "rhel", "rhel-extracted-only", "suse", "alpine", "macos"]
)
def test_each_layout_finds_its_bundle(tmp_path, pki, layout):
    out = run_layout(tmp_path, pki, layout, [{"request": True}])
    assert out["results"] == [{"ok": True}]
    assert out["jobs_created"] == 1


def test_no_bundle_anywhere_says_which_paths_were_tried(tmp_path, pki):
    out = run_layout(tmp_path, pki, "none", [{"request": True}])
    (res,) = out["results"]
    assert res["ok"] is False
    assert res["type"] == "ConnectionError", res
    msg = res["error"]
    assert "TLS" in msg
    assert "no CA bundle found (tried " + ", ".join(PROBED) + ")" in msg, msg
    assert "ca_bundle" in msg and "SSL_CERT_FILE" in msg
    assert out["jobs_created"] == 0


def test_certifi_is_the_last_candidate(tmp_path, pki):
    out = run_layout(tmp_path, pki, "none", [{"request": True}], certifi=str(pki["ca_pem"]))
    assert out["results"] == [{"ok": True}]


def test_certifi_unreadable_is_listed_among_the_paths_tried(tmp_path, pki):
    missing = str(tmp_path / "no-certifi" / "cacert.pem")
    out = run_layout(tmp_path, pki, "none", [{"request": True}], certifi=missing)
    (res,) = out["results"]
    assert res["ok"] is False
    assert ", ".join(PROBED) + ", " + missing + ")" in res["error"], res["error"]


def test_a_system_bundle_comes_before_certifi(tmp_path, pki):
    # certifi's bundle here lacks the emulator's CA: had it been chosen over
    # the Debian bundle, the handshake would fail.
    other = tmp_path / "other.pem"
    other.write_text(pki["OTHER"])
    out = run_layout(tmp_path, pki, "debian", [{"request": True}], certifi=str(other))
    assert out["results"] == [{"ok": True}]


def test_ssl_cert_dir_is_honoured(tmp_path, pki):
    certdir = tmp_path / "certdir"
    certdir.mkdir()
    shutil.copy(pki["ca_pem"], certdir / "test-ca.pem")
    subprocess.run(["openssl", "rehash", str(certdir)], check=True, capture_output=True)
    assert any(p.name.endswith(".0") for p in certdir.iterdir())
    out = run_layout(tmp_path, pki, "none", [{"request": True}], env={"SSL_CERT_DIR": str(certdir)})
    assert out["results"] == [{"ok": True}]


def test_the_probe_runs_once_per_client(tmp_path, pki):
    # A bundle that appears after the client was made is not seen by it (the
    # paths were probed when it was made); the next client finds it.
    late = "/etc/pki/tls/certs/ca-bundle.crt"
    steps = [{"late_bundle": late, "ca": pki["CA"]}, {"request": True}]
    out = run_layout(tmp_path, pki, "none", steps)
    first, second = out["results"]
    assert first["ok"] is False and "no CA bundle found" in first["error"], first
    assert second == {"ok": True}
