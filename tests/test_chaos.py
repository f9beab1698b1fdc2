"""The chaos soak: a batch through generate_many while 5% of all requests, on every
route, fail in every way the emulator knows (Emulator.chaos).

What must hold, whatever failed where: every item ends, either done with files
whose bytes are the emulator's, or with a clear error (a Uni1Error with a
message); every job the emulator created is the job of exactly one item (no
prompt was paid twice, no job was paid and then lost).

CI runs a short soak. The long one: UNI1_CHAOS_ITEMS=2000 (and optionally
UNI1_CHAOS_CONCURRENCY, UNI1_CHAOS_SEED, UNI1_CHAOS_RATE); run it with -s to see
its figures (items done and failed, jobs, POSTs, wall time, faults by kind).
"""

from __future__ import annotations

import collections
import io
import os
import random
import threading
import time

import pytest

import scenario_uni1 as uni1
from scenario_uni1.emulator import Emulator

ITEMS = int(os.environ.get("UNI1_CHAOS_ITEMS", "150"))
CONCURRENCY = int(os.environ.get("UNI1_CHAOS_CONCURRENCY", "20"))
RATE = float(os.environ.get("UNI1_CHAOS_RATE", "0.05"))
SEED = int(os.environ.get("UNI1_CHAOS_SEED", str(random.SystemRandom().randrange(1 << 31))))

# Every 10th item has a small input (POST /v1/assets), every 50th a large one
# (the multipart /v1/uploads flow and its part PUT).
SMALL_EVERY, LARGE_EVERY = 10, 50


def _png(width, height, data=None):
    from PIL import Image

    image = Image.frombytes("RGB", (width, height), data) if data else None
    image = image or Image.new("RGB", (width, height), (40, 90, 200))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _requests(tmp_path):
    small = _png(64, 32)
    large = tmp_path / "large.png"
    # Noise does not compress: just over the inline limit, so multipart.
    large.write_bytes(_png(1100, 1100, random.Random(SEED).randbytes(1100 * 1100 * 3)))
    assert large.stat().st_size > 3_500_000
    requests = []
    for i in range(ITEMS):
        item = {"prompt": f"chaos soak {SEED} item {i}"}
        if i % LARGE_EVERY == LARGE_EVERY - 3:
            item["image_refs"] = [str(large)]
        elif i % SMALL_EVERY == SMALL_EVERY - 1:
            item["image_refs"] = [small]
        requests.append(item)
    return requests


def _consume(iterator, deadline):
    """Every Generation generate_many yields, or a failure naming what never ended."""
    out: list = []
    box: dict = {}

    def run():
        try:
            out.extend(iterator)
        except BaseException as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"generate_many still running after {deadline:.0f} s: {len(out)} yielded")
    if "error" in box:
        raise box["error"]
    return out


def test_chaos_soak(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    requests = _requests(tmp_path)
    with Emulator(job_duration=0.3, record_requests=False) as emu:
        chaos = emu.chaos(RATE, seed=SEED)
        client = emu.client(
            timeout=30,
            stall_timeout=1.0,
            backoff_base=0.02,
            backoff_max=0.5,
            # Longer than the emulator's create_after (at most 1 s): a job
            # made after its POST failed shows up within the window.
            settle_window=2.5,
        )
        with client:
            t0 = time.monotonic()
            gens = _consume(
                client.generate_many(requests, concurrency=CONCURRENCY, download=out_dir),
                deadline=max(240.0, ITEMS * 0.3),
            )
            wall = time.monotonic() - t0
        while emu.late_pending:  # a create_after job still to come would be an orphan
            time.sleep(0.05)
        created = emu.created_jobs()
        check_soak(emu, requests, gens, created, chaos, wall, out_dir)


def check_soak(emu, requests, gens, created, chaos, wall, out_dir):
    prompts = {r["prompt"] for r in requests}
    assert len(gens) == len(requests), "generate_many yielded one Generation per item"
    done, failed, item_jobs, published = [], [], {}, set()
    for gen in gens:
        assert gen.done
        job = gen.job
        if job is not None:
            prompt = job.raw["metadata"]["input"]["prompt"]
            assert prompt in prompts
            assert prompt not in item_jobs, f"two items ended with a job for {prompt!r}"
            item_jobs[prompt] = job.id
        if gen.error is None:
            paths = gen.result()
            assert job is not None and job.status == "success"
            assert len(paths) == len(job.asset_ids) == 1
            for path, asset_id in zip(paths, job.asset_ids):
                assert path.read_bytes() == emu.asset_bytes(asset_id), (job.id, asset_id, path)
                published.add(path.name)
            done.append(gen)
        else:
            assert isinstance(gen.error, uni1.Uni1Error), repr(gen.error)
            assert str(gen.error).strip(), repr(gen.error)
            failed.append(gen)

    jobs_by_prompt = collections.defaultdict(list)
    for job_id, body in created:
        jobs_by_prompt[body["prompt"]].append(job_id)
    assert set(jobs_by_prompt) <= prompts
    duplicates = {p: ids for p, ids in jobs_by_prompt.items() if len(ids) > 1}
    orphans = [
        (p, job_id)
        for p, ids in jobs_by_prompt.items()
        for job_id in ids
        if item_jobs.get(p) != job_id
    ]
    errors = collections.Counter(f"{type(g.error).__name__}: {g.error}"[:160] for g in failed)
    figures = (
        f"chaos soak: seed {SEED}, rate {RATE}, {len(requests)} items, concurrency "
        f"{CONCURRENCY}: {len(done)} done, {len(failed)} failed, {len(created)} jobs created, "
        f"{chaos.seen.get('generate', 0)} generate POSTs, {len(duplicates)} prompts with "
        f"two jobs, {len(orphans)} orphans, wall {wall:.1f} s\n"
        f"  requests by route: {dict(sorted(chaos.seen.items()))}\n"
        f"  faults by kind ({chaos.faulted}): {dict(sorted(chaos.counts.items()))}\n"
        + "".join(f"  {n} x {text}\n" for text, n in errors.most_common())
    )
    print(figures)
    # Only finished files, and all of them: no partial or temporary file of a failed transfer.
    assert {p.name for p in out_dir.iterdir()} == published
    # 5% of requests faulted: an item fails only when the same request fails
    # max_retries + 1 times in a row, or on a fault that is not worth a retry.
    assert len(done) >= 0.9 * len(requests), figures
    assert not duplicates, f"paid twice: {duplicates}\n{figures}"
    assert not orphans, f"jobs no item holds (paid, lost): {orphans[:10]}\n{figures}"
    # The chaos really happened, on every route of the batch.
    assert chaos.faulted > 0
    for route in (
        "generate",
        "job",
        "asset",
        "cdn_get",
        "asset_upload",
        "upload_create",
        "part_put",
    ):
        assert chaos.seen.get(route, 0) > 0, (route, chaos.seen)
