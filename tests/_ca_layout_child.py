"""Run by tests/test_ca_probe.py inside a private mount namespace whose /etc
has the file layout of another system's CA store. Starts an HTTPS emulator,
makes clients that are given no CA, and prints what their requests did as
JSON on stdout.

    python _ca_layout_child.py CONFIG.json

CONFIG: server_cert/server_key (PEM files of the emulator's certificate),
certifi (None: not importable; a path: a certifi whose where() gives it),
steps: a list of {"request": true} (a client made, then a round trip) or
{"late_bundle": PATH, "ca": PEM} (a client made, then PATH written, then a
round trip: the probe ran before the file was there).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import types


def _certifi(config) -> None:
    where = config.get("certifi")
    if where is None:
        sys.modules["certifi"] = None  # type: ignore[assignment]  # import fails
    else:
        fake = types.ModuleType("certifi")
        fake.where = lambda: where  # type: ignore[attr-defined]
        sys.modules["certifi"] = fake


def _round_trip(client) -> dict:
    import scenario_uni1 as uni1

    try:
        job = client.generate("from a layout")
        job.wait(timeout=20)
        (img,) = job.images()
        if not img.data.startswith(b"\x89PNG"):
            return {"ok": False, "type": "bad image", "error": repr(img.data[:16])}
    except uni1.Uni1Error as exc:
        return {"ok": False, "type": type(exc).__name__, "error": str(exc)}
    return {"ok": True}


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    _certifi(config)
    from scenario_uni1 import _core
    from scenario_uni1.emulator import Emulator

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(config["server_cert"], config["server_key"])
    out: dict = {"results": [], "core": os.path.realpath(_core.__file__)}
    out["etc"] = sorted(
        os.path.relpath(os.path.join(d, n), "/etc")
        for top in ("/etc/ssl", "/etc/pki")
        for d, _, names in os.walk(top)
        for n in names
    )
    with Emulator(ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0) as emu:
        for step in config["steps"]:
            with emu.client(max_retries=0, timeout=10.0) as client:
                if "late_bundle" in step:
                    os.makedirs(os.path.dirname(step["late_bundle"]), exist_ok=True)
                    with open(step["late_bundle"], "w") as f:
                        f.write(step["ca"])
                out["results"].append(_round_trip(client))
        out["jobs_created"] = emu.jobs_created
    print(json.dumps(out))


if __name__ == "__main__":
    main()
