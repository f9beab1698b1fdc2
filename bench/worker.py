"""One client's side of one figure, in a fresh process: `python -m bench.worker FIG CLIENT JSON`.

The emulator runs in the driver's process, so what `time.process_time()` and
`getrusage(RUSAGE_SELF)` read here is this client alone. The last stdout line is
`RESULT {json}`; P5 also prints `READY` when it is about to block.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import resource
import signal
import sys
import threading
import time

from .clients import make


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss():
    """Start the peak (VmHWM) afresh, so the peak read later belongs to what
    follows and not to imports or earlier work (Linux: clear_refs, value 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes():
    """VmHWM from /proc/self/status (falls back to ru_maxrss)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return maxrss_bytes()


class PerfControl:
    """`perf record --delay=-1 --control=fifo:CTL,ACK` starts with its events off: the worker
    turns them on for the measured loop alone (not the interpreter's start-up and imports).
    The fifos stay open for the life of the process."""

    def __init__(self, fifos):
        self.ctl = self.ack = None
        if fifos:
            self.ctl = os.open(fifos[0], os.O_WRONLY)
            self.ack = os.open(fifos[1], os.O_RDONLY)

    def command(self, what):
        if self.ctl is not None:
            os.write(self.ctl, what.encode() + b"\n")
            os.read(self.ack, 64)  # "ack": the events are on (off) from here


def p2(client, a):
    c = make(client)
    dest = a.get("dest")

    def one(i):
        job = c.wait(c.submit(f"bench p2 {i}"))
        if dest:
            c.download(job, dest)
        else:
            c.fetch(job)

    def chain(k):
        for i in range(k, a["n"], threads):
            one(i)

    one(-1)  # warm-up: connections, lazy imports
    threads = a.get("threads", 1)
    prof = None
    if a.get("profile"):
        import cProfile
        import io
        import pstats

        threads = 1  # cProfile sees the thread that enables it; its timer is process CPU time
        prof = cProfile.Profile(time.process_time)
        prof.enable()
    perf = PerfControl(a.get("perf_ctl"))
    perf.command("enable")
    t0, w0 = time.process_time(), time.perf_counter()
    if threads == 1:
        chain(0)
    else:
        ts = [threading.Thread(target=chain, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    perf.command("disable")
    if prof is not None:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
        with open(a["profile"], "w") as f:
            f.write(buf.getvalue())
    return {"cpu_per_job": cpu / a["n"], "wall": wall, "jobs": a["n"] + 1}


def p4(client, a):
    from concurrent.futures import ThreadPoolExecutor

    c = make(client)
    box = {"n": 0, "stop": False}

    def count():
        n = 0
        while not box["stop"]:
            n += 1
            if not n & 1023:
                box["n"] = n
        box["n"] = n

    def timed(seconds_or_fn):
        box["n"], box["stop"] = 0, False
        th = threading.Thread(target=count)
        t0 = time.perf_counter()
        th.start()
        if callable(seconds_or_fn):
            seconds_or_fn()
        else:
            time.sleep(seconds_or_fn)
        box["stop"] = True
        th.join()
        return box["n"] / (time.perf_counter() - t0)

    def jobs():
        def one(i):
            c.fetch(c.wait(c.submit(f"bench p4 {i}")))

        with ThreadPoolExecutor(a["n"]) as ex:
            list(ex.map(one, range(a["n"])))

    c.fetch(c.wait(c.submit("warm-up")))
    alone = timed(a.get("alone_seconds", 3.0))
    during = timed(jobs)
    return {"alone": alone, "during": during, "ratio": during / alone}


def p5(client, a):
    # A process started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: put it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    c = make(client)
    case = a["case"]
    if client != "ours" and case in ("result", "as_completed"):
        case = "wait"  # the SDK has no generations: its blocking wait loop stands beside them
    if case in ("result", "as_completed"):
        gen = c.start("bench p5")
    else:
        job = c.submit("bench p5")
    if case == "download":
        job = c.wait(job)
    print("READY", flush=True)
    try:
        if case == "wait":
            c.wait(job)
        elif case == "result":
            gen.result()
        elif case == "as_completed":
            for _ in c.completed([gen]):
                pass
        else:
            c.download(job, a["dest"])
    except KeyboardInterrupt:
        return {"interrupted_at": time.monotonic()}
    return {"interrupted_at": None}


def p6(client, a):
    c = make(client)
    job = c.wait(c.submit("bench p6"))
    gc.collect()
    rss0 = rss_bytes()
    reset_peak_rss()
    t0 = time.perf_counter()
    paths = c.download(job, a["dest"])
    secs = time.perf_counter() - t0
    size = sum(os.path.getsize(p) for p in paths)
    return {
        "seconds": secs,
        "rss_growth": peak_rss_bytes() - rss0,
        "bytes": size,
        "job_id": c.job_id(job),
    }


def p7(client, a):
    n = a["n"]
    idlen = len(a["job_id"])
    ids = [("job_" + format(i, "0%dd" % (idlen - 4))) for i in range(n)]
    if client == "ours":
        import scenario_uni1  # noqa: F401  (import cost is P1's, not P7's)

        with open(a["pickle"], "rb") as f:
            blob = f.read()
        old = a["job_id"].encode()
        blobs = [blob.replace(old, i.encode()) for i in ids]

        def build(k):
            return pickle.loads(blobs[k])
    else:
        from scenario_sdk._models import construct_type  # what the SDK does with a response body
        from scenario_sdk.types import JobRetrieveResponse

        with open(a["json"]) as f:
            text = f.read()
        texts = [text.replace(a["job_id"], i) for i in ids]

        def build(k):
            return construct_type(type_=JobRetrieveResponse, value=json.loads(texts[k]))

    build(0)  # first-use caches (pydantic schemas, type objects) are not per job
    gc.collect()
    rss0 = rss_bytes()
    live = [build(k) for k in range(n)]
    gc.collect()
    growth = rss_bytes() - rss0
    assert len({id(x) for x in live}) == n
    return {"bytes_per_job": growth / n}


def p8(client, a):
    from concurrent.futures import ThreadPoolExecutor

    c = make(client)
    c.wait(c.submit("warm-up"))
    print("READY", flush=True)
    sys.stdin.readline()  # the driver sets the job duration, then says go

    def one(i):
        job = c.wait(c.submit(f"bench p8 {i}"))
        return c.job_id(job), time.time()

    with ThreadPoolExecutor(a["n"]) as ex:
        return {"done": list(ex.map(one, range(a["n"])))}


def mkjob(client, a):
    c = make("ours")
    job = c.wait(c.submit("bench p7"))
    with open(a["pickle"], "wb") as f:
        pickle.dump(job, f)
    return {"job_id": job.id}


def emurate(client, a):
    c = make("ours")
    job = c.wait(c.submit("bench rate"))
    per = a["n"] // 4

    def hammer():
        for _ in range(per):
            c.client.job(job.id)

    ts = [threading.Thread(target=hammer) for _ in range(4)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"per_second": 4 * per / (time.perf_counter() - t0)}


FIGURES = {
    "rate": emurate,
    "P2": p2,
    "P4": p4,
    "P5": p5,
    "P6": p6,
    "P7": p7,
    "P8": p8,
    "mkjob": mkjob,
}


def main():
    from . import engine_worker

    fig, client, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    res = {**FIGURES, **engine_worker.FIGURES}[fig](client, args)
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
