"""Checks of an installed scenario_uni1 wheel, run by the interpreter it is
installed in (never from the source tree: the unbuilt scenario_uni1/ there
would shadow it).

    python wheel_smoke.py offline
        cibuildwheel's test-command: `scenario-uni1 generate --offline`
        writes a PNG.
    python wheel_smoke.py hidden
        exits 0 only if the system's libcurl and libcjson cannot be loaded
        (scripts/wheel_check.sh runs it outside its mount namespace, where it
        must fail, and inside, where it must pass).
    python wheel_smoke.py full SERVER_CERT SERVER_KEY
        offline, then: the extension's libcurl and libcjson are the wheel's
        own copies (scenario_uni1.libs), and a TLS round trip to a local
        HTTPS emulator succeeds with no CA given (the core's probe must find
        the bundle the caller put at one of the known paths).
"""

from __future__ import annotations

import ctypes
import os
import ssl
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HIDDEN = ("libcurl.so.4", "libcjson.so.1")


def offline() -> None:
    import scenario_uni1

    here = Path(scenario_uni1.__file__).resolve().parent
    assert "site-packages" in here.parts, f"scenario_uni1 imported from {here}, not the wheel"
    cli = Path(sysconfig.get_path("scripts")) / (
        "scenario-uni1" + (".exe" if os.name == "nt" else "")
    )
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [str(cli), "generate", "--offline", "-q", "-o", out, "a lighthouse at dawn"],
            check=True,
            timeout=120,
        )
        pngs = list(Path(out).glob("*.png"))
        assert len(pngs) == 1, os.listdir(out)
        assert pngs[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    print(f"offline generation: ok ({scenario_uni1.__version__}, {here})")


def hidden() -> int:
    reachable = []
    for name in HIDDEN:
        try:
            ctypes.CDLL(name)
        except OSError as exc:
            print(f"{name}: not loadable ({exc})")
        else:
            reachable.append(name)
    if reachable:
        print(f"reachable system libraries: {', '.join(reachable)}", file=sys.stderr)
        return 1
    return 0


def _loaded(stem: str) -> list[str]:
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if len(line.split()) >= 6}
    return sorted(p for p in paths if os.path.basename(p).startswith(stem))


def full(cert: str, key: str) -> None:
    offline()
    from scenario_uni1 import _core
    from scenario_uni1.emulator import Emulator

    for stem in ("libcurl", "libcjson"):
        paths = _loaded(stem)
        assert paths, f"no {stem} mapped after importing {_core.__file__}"
        foreign = [p for p in paths if "/scenario_uni1.libs/" not in p]
        assert not foreign, f"{stem} loaded from outside the wheel: {foreign}"
        print(f"{stem}: {paths[0]}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with Emulator(ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0) as emu:
        with emu.client(max_retries=0, timeout=20.0) as client:
            job = client.generate("over TLS, CA found by the probe")
            job.wait(timeout=30)
            (img,) = job.images()
            assert img.data.startswith(b"\x89PNG"), img.data[:8]
    print(f"TLS round trip (API + CDN) to {emu.url}: ok")


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "offline":
        offline()
    elif mode == "hidden":
        return hidden()
    elif mode == "full" and len(sys.argv) == 4:
        full(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
