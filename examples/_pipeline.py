"""What examples/dask_pipeline.py and examples/ray_pipeline.py share: the
command line, the built-in emulator for --offline, the task each worker runs,
and the manifest written at the end.

The task is pickled by value (cloudpickle, which both engines use): a worker
needs scenario_uni1 installed, not this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time


def parse_args(engine: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f"Render prompts through {engine}, each exactly once, with files and a manifest."
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="run against the built-in emulator (started here; no account, no cost)",
    )
    parser.add_argument(
        "--base-url", help="the API (or an emulator's URL); default: SCENARIO_BASE_URL or Scenario"
    )
    parser.add_argument("--prompts", type=int, default=100, help="how many prompts (default 100)")
    parser.add_argument("-o", "--out", default=f"renders/{engine.lower()}", help="output directory")
    parser.add_argument(
        "--journal",
        help="the journal every worker shares: a file (one machine) or a postgresql:// URL "
        "(put its password in PGPASSWORD or ~/.pgpass, not in the URL: the URL goes to "
        "the workers); default: OUT/.scenario-uni1/journal.sqlite (a temporary one offline)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    if args.offline and args.base_url:
        parser.error("--offline and --base-url do not mix")
    args.out = os.path.abspath(args.out)
    if args.journal is None and args.offline:
        # The built-in emulator's jobs end with this process: a journal that
        # outlived them would send the next run to jobs no server knows.
        args.journal = os.path.join(tempfile.mkdtemp(prefix="uni1-journal-"), "journal.sqlite")
    elif args.journal is None:
        os.makedirs(os.path.join(args.out, ".scenario-uni1"), exist_ok=True)
        args.journal = os.path.join(args.out, ".scenario-uni1", "journal.sqlite")
    return args


def start_emulator():
    """The built-in emulator, in this process; its environment for the workers."""
    from scenario_uni1.emulator import Emulator

    emulator = Emulator(job_duration=0.5)
    emulator.start()
    return emulator, emulator.env()


def prompts(n: int) -> list[str]:
    subjects = ["a lighthouse", "a red fox", "a castle", "an owl", "a harbour", "a maple tree"]
    moods = ["at dawn", "in the rain", "under snow", "at dusk", "in fog"]
    return [f"{subjects[i % 6]} {moods[i % 5]}, study {i}" for i in range(n)]


def render(index: int, prompt: str, base_url: str | None, journal: str, out: str) -> dict:
    """One item, in a worker process: that process's client (credentials from
    its environment), and the journal's word on whether it is paid for already."""
    import scenario_uni1 as uni1

    client = uni1.shared_client(base_url=base_url, journal=journal)
    job = client.generate(prompt)
    files = []
    for path in job.download(out, timeout=300):
        with open(path, "rb") as f:
            files.append({"path": os.fspath(path), "sha256": hashlib.sha256(f.read()).hexdigest()})
    return {
        "line": index + 1,
        "prompt": prompt,
        "job_id": job.id,
        "status": job.status,
        "cost": job.cost,
        "files": files,
        "worker_pid": os.getpid(),
    }


def pickle_render_by_value() -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])


def write_manifest(out: str, results: list[dict]) -> str:
    path = os.path.join(out, "manifest.jsonl")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for record in sorted(results, key=lambda r: r["line"]):
            f.write(json.dumps({k: v for k, v in record.items() if k != "worker_pid"}) + "\n")
    os.replace(tmp, path)
    return path


def summary(engine: str, results: list[dict], started: float, manifest: str) -> str:
    workers = len({r["worker_pid"] for r in results})
    files = sum(len(r["files"]) for r in results)
    return (
        f"{engine}: {len(results)} items, {files} files, {workers} worker processes, "
        f"{time.monotonic() - started:.1f} s; manifest: {manifest}"
    )
