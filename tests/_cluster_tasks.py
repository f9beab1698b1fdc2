"""Task functions that tests/test_cluster.py runs in other processes (multiprocessing,
Dask workers, Ray workers). Their arguments carry no credentials: each worker
process finds them in its own environment (scenario_uni1.shared_client).
"""

from __future__ import annotations

import hashlib
import os


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render(prompt: str, base_url: str, journal: str, out: str, marks: str | None = None) -> dict:
    """One item: this process's shared client, the journal's exactly-once, the files.

    With marks (a directory), a file named after this process and the job is
    left there once the job is paid for: a test kills that process then, in
    the middle of the item."""
    from scenario_uni1 import shared_client

    # A short timeout and settle window: a task retried after its worker was
    # killed reconciles the dead worker's POST within seconds.
    client = shared_client(base_url=base_url, journal=journal, timeout=3.0, settle_window=1.0)
    job = client.generate(prompt)
    if marks is not None:
        os.makedirs(marks, exist_ok=True)
        open(os.path.join(marks, f"{os.getpid()}-{job.id}"), "w").close()
    paths = job.download(out, timeout=60)
    return {
        "prompt": prompt,
        "job": job,  # pickled back to the caller: it re-binds there
        "files": [(os.fspath(p), sha256_of(p)) for p in paths],
        "pid": os.getpid(),
    }


def render_all(prompts: list, base_url: str, journal: str, out: str) -> list:
    return [render(p, base_url, journal, out)["job"].id for p in prompts]


def pid() -> int:
    return os.getpid()
