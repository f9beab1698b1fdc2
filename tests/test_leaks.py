"""No leaks over many generate / refresh / fetch / download cycles.

The emulator runs in a child process (started here, stopped here), so that its
own state (every job and asset it creates) does not count against the client's
memory. The pytest process then runs UNI1_LEAK_CYCLES cycles (default 2000,
about 15 s on two cores; the issue's 10,000 is run by hand with
UNI1_LEAK_CYCLES=10000, about a minute). Each cycle: submit, refresh, images() into memory,
download() to disk, plus error paths: a 404 every cycle, a malformed answer every
cycle, and every tenth job a failure that wait() reports.

What is measured, after a warm-up of WARMUP cycles (connections, caches,
allocator pools) and a gc.collect():

- the malloc heap in use (glibc mallinfo2: uordblks + hblkhd). This is exact to
  the byte, unlike RSS, and sees every C allocation of the core, libcurl, cJSON
  and the binding, and every Python object above 512 bytes (image bytes, JSON).
  Tolerance 512 KiB: one-time growth seen in long runs is a single step of about
  200 KiB (a cache or pool filling once); with 2000 cycles a leak of 262 bytes
  per cycle, and with 10,000 one of 53 bytes, exceeds it: a leaked job or asset
  record (700 to 1,500 bytes of raw JSON), error body or image buffer is caught
  by the default run, and the 10,000-cycle run catches leaks down to a short
  string per cycle.
- RSS from /proc/self/statm. Tolerance 2 MiB of page-granular noise (pymalloc
  arenas, malloc trimming) plus the ledger's ring: the process remembers the ids
  of the last 16384 jobs its clients claimed (csrc/core/ledger.c: one allocation
  of 152-byte slots, made at the first claim, whose pages are touched one slot per
  job), so RSS legitimately rises by 152 bytes a cycle until the ring is full. A
  leaked image per cycle would be 50 MB or more.
- len(gc.get_objects()): at most 50 more (Python-level containers: a leaked
  Job, dict or list per cycle would be thousands).
- sys.getrefcount(client): exactly equal (every Job holds a reference to its
  client; a leaked Job or a missing DECREF in an error path shows here).
- tracemalloc over a final window of cycles: Python allocations (including
  those made by the binding) grow by less than 64 KiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import urllib.request

import pytest

import scenario_uni1 as uni1
from scenario_uni1 import _core

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

CYCLES = int(os.environ.get("UNI1_LEAK_CYCLES", "2000"))
WARMUP = max(300, CYCLES // 20)
HEAP_TOLERANCE = 512 * 1024
LEDGER_SLOT = 152  # bytes per claimed job id in the ring of csrc/core/ledger.c
RSS_TOLERANCE = 2 * 1024 * 1024 + LEDGER_SLOT * min(CYCLES, 16384)
OBJECTS_TOLERANCE = 50
TRACEMALLOC_WINDOW = 300
TRACEMALLOC_TOLERANCE = 64 * 1024


# ------------------------------------------------------------------ measurements


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _heap_reader():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    fn = getattr(libc, "mallinfo2", None)
    if fn is None:  # glibc < 2.33, or not glibc
        return None
    fn.restype = _MallInfo2

    def heap() -> int:
        m = fn()
        return m.uordblks + m.hblkhd

    return heap


heap_bytes = _heap_reader()


def snapshot(client) -> dict:
    gc.collect()
    gc.collect()
    # The download buffers kept for reuse (up to 32 MiB, given back when the
    # engine idles) are not a leak: give them back before measuring.
    _core._release_spare_buffers()
    return {
        "rss": rss_bytes(),
        "heap": heap_bytes() if heap_bytes else 0,
        "objects": len(gc.get_objects()),
        "client_refs": sys.getrefcount(client),
    }


# ------------------------------------------------------------------ the emulator, in a child


@pytest.fixture(scope="module")
def remote_emulator():
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scenario_uni1.emulator",
            "--job-duration",
            "0",
            "--max-recorded-requests",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    info = {}
    try:
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            key, sep, value = line.strip().partition("=")
            if sep:
                info[key] = value
            if key == "SCENARIO_EMULATOR_ADMIN" or time.monotonic() > deadline:
                break
        assert "SCENARIO_BASE_URL" in info, info
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def admin(info, name, body):
    req = urllib.request.Request(
        info["SCENARIO_EMULATOR_ADMIN"] + name,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


# ------------------------------------------------------------------ the cycle


def make_cycle(client, info, dest):
    # A job id that always answers 200 with garbage: the parse-failure path.
    admin(
        info,
        "faults",
        {
            "method": "GET",
            "path": "^/v1/jobs/job_malformed$",
            "status": 200,
            "body": '{"job": {"jobId": 42, "status": "succ',
            "times": None,
        },
    )
    stats = {"ok": 0, "failed": 0}

    def cycle(i: int) -> None:
        fail = i % 10 == 5
        if fail:
            admin(info, "outcomes", {"status": "failure", "error": "no", "hint": "try"})
        job = client.generate(f"leak cycle {i % 13}", aspect_ratio="1:1")
        job.refresh()
        if fail:
            assert job.status == "failure"
            try:
                job.wait(timeout=5)
            except uni1.JobFailedError as exc:
                assert exc.job is job
            stats["failed"] += 1
        else:
            assert job.status == "success"
            (img,) = job.images()
            assert img.data[:4] == b"\x89PNG"
            (path,) = job.download(dest)
            assert path.stat().st_size == len(img.data)
            path.unlink()  # ten thousand images would fill the disk
            stats["ok"] += 1
        try:
            client.job("job_doesnotexist")
        except uni1.NotFoundError as exc:
            assert exc.status_code == 404
        try:
            client.job("job_malformed")
        except uni1.APIError as exc:
            assert "malformed" in str(exc)

    return cycle, stats


# The measurement runs in a fresh interpreter: in the middle of the whole suite,
# threads and state that earlier tests leave behind (an in-process emulator,
# clients being collected, glibc's arenas and mmap threshold tuned by earlier
# bursts) move the process-wide heap by a one-time step of about 1 MB at a
# random point, which says nothing about this loop.
IN_CHILD = os.environ.get("UNI1_LEAK_CHILD") == "1"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
def test_flat_memory_over_many_cycles(request, tmp_path):
    if not IN_CHILD:
        env = dict(os.environ, UNI1_LEAK_CHILD="1", PYTHONPATH=os.pathsep.join(sys.path))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-s",
                "-p",
                "no:cacheprovider",
                request.node.nodeid,
            ],
            cwd=request.config.rootpath,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        print(out.stdout[-4000:], out.stderr[-2000:])
        assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
        assert "1 passed" in out.stdout
        return
    info = request.getfixturevalue("remote_emulator")
    dest = tmp_path / "out"
    with uni1.Client(
        info["SCENARIO_SDK_API_KEY"],
        info["SCENARIO_SDK_API_SECRET"],
        base_url=info["SCENARIO_BASE_URL"],
        max_retries=0,
        timeout=10.0,
    ) as client:
        cycle, stats = make_cycle(client, info, dest)
        for i in range(WARMUP):
            cycle(i)
        before = snapshot(client)
        samples = []
        t0 = time.monotonic()
        step = max(1, CYCLES // 10)
        for i in range(WARMUP, WARMUP + CYCLES):
            cycle(i)
            if (i - WARMUP) % step == step - 1:
                samples.append(snapshot(client))
        elapsed = time.monotonic() - t0
        after = snapshot(client)

        # Python allocations over a final window, with tracemalloc on.
        tracemalloc.start(10)
        try:
            for i in range(50):
                cycle(i)
            gc.collect()
            first = tracemalloc.take_snapshot()
            for i in range(TRACEMALLOC_WINDOW):
                cycle(i)
            gc.collect()
            second = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()

    traced = sum(s.size_diff for s in second.compare_to(first, "filename"))
    report = "\n".join(
        f"{n:>6} cycles: rss {s['rss'] - before['rss']:+,} B, heap {s['heap'] - before['heap']:+,} B, "
        f"objects {s['objects'] - before['objects']:+}"
        for n, s in zip(range(step, CYCLES + 1, step), samples)
    )
    print(
        f"\n{CYCLES} cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.2f} ms each), "
        f"{stats['ok']} fetched, {stats['failed']} failed\n{report}\n"
        f"tracemalloc growth over {TRACEMALLOC_WINDOW} cycles: {traced:+,} B"
    )
    assert stats["ok"] > 0 and stats["failed"] > 0
    assert after["client_refs"] == before["client_refs"], report
    assert after["objects"] - before["objects"] <= OBJECTS_TOLERANCE, report
    # Under AddressSanitizer (make asan) freed memory sits in ASan's quarantine
    # (up to 256 MB) and malloc statistics are ASan's own, so RSS and heap say
    # nothing about leaks there; the object and reference counts still do.
    if not UNDER_ASAN:
        if heap_bytes is not None:
            assert after["heap"] - before["heap"] <= HEAP_TOLERANCE, report
        assert after["rss"] - before["rss"] <= RSS_TOLERANCE, report
    assert traced <= TRACEMALLOC_TOLERANCE, second.compare_to(first, "lineno")[:10]
    assert os.listdir(dest) == []  # every download landed, and no temporary file stayed


def test_client_and_jobs_are_released(remote_emulator):
    """Dropping clients and jobs frees them: no reference cycle keeps a client alive."""
    import weakref

    info = remote_emulator
    refs = []

    def one_round() -> None:
        c = uni1.Client(
            info["SCENARIO_SDK_API_KEY"],
            info["SCENARIO_SDK_API_SECRET"],
            base_url=info["SCENARIO_BASE_URL"],
            max_retries=0,
        )
        job = c.generate("released")
        job.refresh()
        job.images()
        try:
            c.job("job_doesnotexist")
        except uni1.NotFoundError:
            pass
        refs.append(weakref.ref(c))

    # The first round imports and caches what any first use does (run alone,
    # nothing before this test has); the rounds after it must add nothing.
    one_round()
    gc.collect()
    before = snapshot(object())
    for _ in range(20):
        one_round()
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    after = snapshot(object())
    assert after["objects"] - before["objects"] <= OBJECTS_TOLERANCE
