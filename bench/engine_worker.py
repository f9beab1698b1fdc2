"""The client side of the engine figures (P2 via submit, P3, P9, P10), one client per fresh process.

Run through `python -m bench.worker FIG CLIENT JSON` like the others (bench/worker.py looks
here for the figures it does not have). Our client goes through one engine and no thread
per job; the SDK through what its users have: a thread per job in flight (P3), or asyncio
tasks on its AsyncScenario (P10). The OS thread count and RSS are read from /proc/self, by
the thread that waits (no sampling thread, which would be counted).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import os
import re
import statistics
import threading
import time

from .clients import SdkAsync, make
from .worker import PerfControl, reset_peak_rss


class _Proc:
    """/proc/self/status read through a descriptor opened up front: P9 may run the process
    out of file descriptors, and the figures must still be read then."""

    fd = None

    @classmethod
    def field(cls, name):
        if cls.fd is None:
            cls.fd = os.open("/proc/self/status", os.O_RDONLY)
        for line in os.pread(cls.fd, 1 << 16, 0).decode().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        raise KeyError(name)


def threads_now():
    return _Proc.field("Threads")


def p2_engine(client, a):
    """P2 through the engine: a window of `window` generations in flight from one thread."""
    c = make("ours")
    c.start("warm-up", download=a.get("dest")).result()
    prompts = [f"bench p2e {i}" for i in range(a["n"])]
    perf = PerfControl(a.get("perf_ctl"))
    perf.command("enable")
    t0, w0 = time.process_time(), time.perf_counter()
    got = 0
    for g in c.window(prompts, a["window"], download=a.get("dest")):
        g.result()
        got += 1
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    perf.command("disable")
    assert got == a["n"], got
    return {"cpu_per_job": cpu / a["n"], "wall": wall, "jobs": a["n"] + 1, "api": c.api()}


def p3(client, a):
    """n jobs, `concurrency` in flight: ours from one thread on the engine, the SDK with a
    thread per job in flight (each runs jobs one after another: submit, 3 s polls, fetch)."""
    n, conc = a["n"], a["concurrency"]
    c = make(client)
    if client == "ours":
        c.start("warm-up").result()
    else:
        c.fetch(c.wait(c.submit("warm-up")))
    threads_max = threads_now()
    prompts = [f"bench p3 {i}" for i in range(n)]
    t0, w0 = time.process_time(), time.perf_counter()
    done = 0
    lags = []  # per job: wall clock when its result is in hand minus the server's success date
    if client == "ours":
        for g in c.window(prompts, conc):
            g.result()
            lags.append(time.time() - _success_date(g.job.raw["statusHistory"]))
            done += 1
            if not done % 50:
                threads_max = max(threads_max, threads_now())
    else:
        lock = threading.Lock()
        todo = iter(prompts)
        counts = [0]

        def run():
            while True:
                with lock:
                    p = next(todo, None)
                if p is None:
                    return
                job = c.wait(c.submit(p))
                c.fetch(job)
                lag = time.time() - _success_date(job.status_history)
                with lock:
                    counts[0] += 1
                    lags.append(lag)

        ts = [threading.Thread(target=run) for _ in range(conc)]
        for t in ts:
            t.start()
        threads_max = max(threads_max, threads_now())
        for t in ts:
            t.join()
        done = counts[0]
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    assert done == n, done
    out = {"cpu": cpu, "wall": wall, "threads_max": threads_max, "lag_mean": statistics.mean(lags)}
    if client == "ours":
        out["api"] = c.api()
    return out


def _success_date(history):
    """Unix time of the success entry of a statusHistory (our raw dicts or the SDK's models)."""
    for h in history:
        status, date = (h["status"], h["date"]) if isinstance(h, dict) else (h.status, h.date)
        if status == "success":
            if isinstance(date, datetime.datetime):
                return date.timestamp()
            return (
                datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%fZ")
                .replace(tzinfo=datetime.timezone.utc)
                .timestamp()
            )
    raise ValueError("no success in the job's statusHistory")


def p9(client, a):
    """n generations started at once (each: POST, wait, download to a directory): the OS
    threads and the RSS growth while they are all in flight, and the CPU per job."""
    n = a["n"]
    c = make("ours")
    dest = a["dest"]
    c.start("warm-up", download=dest).result()
    for name in os.listdir(dest):
        os.unlink(os.path.join(dest, name))
    threads0 = threads_now()
    rss0 = _Proc.field("VmRSS") * 1024
    reset_peak_rss()
    t0, w0 = time.process_time(), time.perf_counter()
    gens = [c.start(f"bench p9 {i}", download=dest) for i in range(n)]
    t_started = time.perf_counter() - w0
    threads_max, done = threads0, 0
    for _ in c.completed(gens):
        done += 1
        if not done % 500:
            threads_max = max(threads_max, threads_now())
    assert done == n, done
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    peak = _Proc.field("VmHWM") * 1024
    errors = [
        re.sub(r"job_\w+", "job_ID", f"{type(g.error).__name__}: {g.error}".replace(dest, "DIR"))
        for g in gens
        if g.error is not None
    ]
    return {
        "n": n,
        "threads_before": threads0,
        "threads_max": threads_max,
        "rss_growth": peak - rss0,
        "cpu_per_job": cpu / n,
        "wall": wall,
        "start_loop_seconds": t_started,
        "errors": len(errors),
        "error_kinds": dict(collections.Counter(errors).most_common(4)),
        "api": c.api(),
    }


def p10(client, a):
    """A ticker coroutine due every 5 ms records how late it wakes while n generations run
    on the same loop (ours: awaited through the engine; the SDK: AsyncScenario tasks)."""
    n, period = a["n"], 0.005
    c = make("ours") if client == "ours" else SdkAsync()

    async def main():
        await c.agenerate("warm-up")
        loop = asyncio.get_running_loop()
        lags, stop = [], asyncio.Event()

        async def ticker():
            while not stop.is_set():
                due = loop.time() + period
                await asyncio.sleep(period)
                lags.append(loop.time() - due)

        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.1)
        threads0 = threads_now()
        t0, w0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(*(c.agenerate(f"bench p10 {i}") for i in range(n)))
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        threads_max = threads_now()
        stop.set()
        await tick
        assert len(results) == n and all(results)
        return lags, threads0, threads_max, cpu, wall

    lags, threads0, threads_max, cpu, wall = asyncio.run(main())
    q = statistics.quantiles(lags, n=100)
    out = {
        "p50_ms": q[49] * 1e3,
        "p99_ms": q[98] * 1e3,
        "max_ms": max(lags) * 1e3,
        "ticks": len(lags),
        "threads_before": threads0,
        "threads_after": threads_max,
        "cpu": cpu,
        "wall": wall,
    }
    if client == "ours":
        out["api"] = c.api()
    return out


FIGURES = {"P2e": p2_engine, "P3": p3, "P9": p9, "P10": p10}
