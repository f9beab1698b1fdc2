"""The driver side of the engine figures: P3 (many jobs at once), P9 (10,000 in flight), P10
(asyncio loop lag), the P2 row through the engine, and P2's CPU profile.

A mixin of run.Bench (its emulator, knobs, workers and notes). The client side is
bench/engine_worker.py. While a worker runs, the driver reads its /proc/PID entries (OS
threads, open file descriptors, RSS) from outside, so that no sampling thread is counted and
a worker out of file descriptors is still observed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

from . import report

PY = sys.executable
MiB = 1 << 20


def _proc_sample(pid):
    """(threads, fds, rss bytes) of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
    rss = re.search(r"^VmRSS:\s+(\d+)", text, re.M)
    if not threads or not rss:  # exited, not reaped yet: no memory lines any more
        return None
    return int(threads.group(1)), fds, int(rss.group(1)) * 1024


class EngineFigures:
    # ------------------------------------------------------------ helpers
    def watched(self, fig, client, timeout=1800, period=0.25, **args):
        """Runs a worker and samples its threads, fds and RSS from outside until it exits."""
        from .run import ROOT, _result

        p = subprocess.Popen(
            [PY, "-m", "bench.worker", fig, client, json.dumps(args)],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = {"threads": 0, "fds": 0, "rss": 0}
        t_end = time.monotonic() + timeout
        while p.poll() is None:
            s = _proc_sample(p.pid)
            if s:
                for k, v in zip(("threads", "fds", "rss"), s):
                    seen[k] = max(seen[k], v)
            if time.monotonic() > t_end:
                p.kill()
                break
            time.sleep(period)
        out, err = p.communicate()
        r = _result(out, err, fig, client)
        r["seen"] = seen
        return r

    def api_note(self, r):
        api = r.get("api")
        if api and api not in self.apis:
            self.apis.append(api)

    # ------------------------------------------------------------ P2 through the engine
    def p2_engine_runs(self, n, window):
        return [
            self.worker("P2e", "ours", n=n, window=window)["cpu_per_job"] * 1e3
            for _ in range(self.runs)
        ]

    def p2_profile(self, n):
        """bench/profile_p2.txt: where our client's CPU goes in P2 (1 MiB to memory): perf
        (every thread of the client process, C and kernel frames, the measured loop only) of
        the blocking calls and of the engine, when perf can run here; cProfile (the Python
        side, one thread) in any case."""
        from .run import P2_THREADS, ROOT

        cprof = os.path.join(self.work, "cprofile.txt")
        self.worker("P2", "ours", n=min(n, 40), profile=cprof)
        parts = []
        perf = shutil.which("perf")
        runs = (
            (
                "P2",
                {"threads": P2_THREADS},
                f"blocking calls (generate, wait, images) in {P2_THREADS} threads",
            ),
            (
                "P2e",
                {"window": P2_THREADS},
                f"generations on the engine, {P2_THREADS} in flight, no threads",
            ),
        )
        for fig, args, what in runs if perf else ():
            text = self.perf_profile(perf, fig, dict(args, n=n))
            if text is None:
                parts = []
                break
            parts.append(f"## perf: {what}; {n} jobs, 1 MiB each to memory\n\n{text}")
        with open(cprof) as f:
            parts.append(
                f"## cProfile (timer: process CPU time) of our client, {min(n, 40)} jobs to memory "
                "in one thread (blocking calls), top 15 cumulative\n\n" + f.read()
            )
        head = (
            "# Where our client's CPU goes in P2 (`python -m bench`, written by bench/engine_figs.py)\n\n"
            "perf: `perf record -F 1999 --call-graph dwarf` of the whole client process (every thread), "
            "events on only during the measured loop (`--delay=-1 --control=fifo:...`, the worker turns "
            "them on and off). Self time by library and symbol, then inclusive time of our C functions "
            "and a few landmarks.\n"
        )
        with open(os.path.join(ROOT, "bench", "profile_p2.txt"), "w") as f:
            f.write(head + "\n" + "\n".join(parts))
        return len(parts) > 1

    def perf_profile(self, perf, fig, args):
        from .run import ROOT

        data = os.path.join(self.work, "perf.data")
        fifos = [os.path.join(self.work, "perf.ctl"), os.path.join(self.work, "perf.ack")]
        for fifo in fifos:
            if not os.path.exists(fifo):
                os.mkfifo(fifo)
        rec = subprocess.run(
            [perf, "record", "-F", "1999", "--call-graph", "dwarf,16384", "-o", data, "--delay=-1"]
            + [f"--control=fifo:{fifos[0]},{fifos[1]}", "--"]
            + [PY, "-m", "bench.worker", fig, "ours", json.dumps(dict(args, perf_ctl=fifos))],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if rec.returncode != 0 or not os.path.exists(data):
            return None

        def report_lines(*opts):
            rep = subprocess.run(
                [perf, "report", "-i", data, "--stdio", "-g", "none", *opts],
                capture_output=True,
                text=True,
            )
            return [x for x in rep.stdout.splitlines() if x.strip() and not x.startswith("#")]

        by_dso = report_lines("--no-children", "--sort", "dso", "--percent-limit", "0.5")
        by_sym = report_lines("--no-children", "--sort", "dso,sym", "--percent-limit", "0.5")
        incl = [
            x
            for x in report_lines("--children", "--sort", "dso,sym", "--percent-limit", "1")
            if "_core.abi3" in x or any(k in x for k in _LANDMARKS)
        ]
        return (
            "### self time by shared object\n\n" + "\n".join(by_dso[:15]) + "\n\n"
            "### self time by symbol\n\n" + "\n".join(by_sym[:30]) + "\n\n"
            "### inclusive (self + callees): our C functions and landmarks\n\n"
            + "\n".join(incl[:45])
            + "\n"
        )

    # ------------------------------------------------------------ P3
    def p3(self):
        n, conc, secs = (100, 50, 1.0) if self.quick else (1000, 100, 2.0)
        self.knobs(job_duration=secs, asset_size_bytes=None, max_jobs_in_flight=None)
        ideal = n / conc * secs
        wall = {"ours": [], "sdk": []}
        cpu = {"ours": [], "sdk": []}
        threads = {"ours": [], "sdk": []}
        lag = {"ours": [], "sdk": []}
        reqs = {}
        for _ in range(self.runs):
            for client in ("ours", "sdk"):
                self.emu.clear_requests()
                r = self.watched("P3", client, n=n, concurrency=conc)
                self.api_note(r)
                wall[client].append(r["wall"] / ideal)
                cpu[client].append(r["cpu"])
                threads[client].append(max(r["threads_max"], r["seen"]["threads"]))
                lag[client].append(r["lag_mean"])
                reqs[client] = self.per_job_requests(n + 1)
        self.knobs(job_duration=0)
        what = f"{n:,} jobs × {secs:g} s at concurrency {conc}"
        rows = [
            report.row(
                "P3",
                f"{what}: wall / ideal ({ideal:g} s)",
                wall["ours"],
                wall["sdk"],
                "≤ 1.10 × ideal",
                target=None,
                absolute=1.10,
                extra=f"requests per job: ours {reqs['ours']}, SDK {reqs['sdk']}",
            ),
            report.row(
                "P3",
                f"{what}: mean time from the job's success (server) to its image in hand (s)",
                lag["ours"],
                lag["sdk"],
                "",
                target=None,
            ),
            report.row(
                "P3",
                f"{what}: client CPU, user+sys of the client process (s)",
                cpu["ours"],
                cpu["sdk"],
                "≤ 1/10 of the SDK",
                target=0.10,
            ),
            report.row(
                "P3",
                f"{what}: OS threads of the client process (max)",
                threads["ours"],
                threads["sdk"],
                "one engine thread (+ main)",
                target=None,
                absolute=2,
            ),
        ]
        self.notes.append(
            f"P3: {n:,} jobs of {secs:g} s server time (job_duration), at most {conc} in flight; each job: "
            "submit, wait, fetch its image to memory. Ours: `generate_many(prompts, "
            f"concurrency={conc})` iterated by the main thread (one `Client`, one engine); the SDK with {conc} threads, each running jobs one after another "
            "(its 3 s poll loop). Ideal: jobs / concurrency × job length. Threads: the most seen in "
            "/proc/PID/status (sampled by the driver every 0.25 s) and /proc/self/task (read by the "
            "worker), after one warm-up job."
        )
        return rows

    # ------------------------------------------------------------ P9
    def p9(self, cpu_p2=None):
        n, secs = (500, 5.0) if self.quick else (10000, 60.0)
        self.knobs(job_duration=secs, asset_size_bytes=None, max_jobs_in_flight=None)
        got = {"threads": [], "rss": [], "cpu": [], "errors": [], "fds": []}
        kinds = {}
        for _ in range(self.runs):
            dest = self.fresh_dir("p9")
            r = self.watched("P9", "ours", n=n, dest=dest, timeout=secs * 4 + 900)
            self.api_note(r)
            got["threads"].append(max(r["threads_max"], r["seen"]["threads"]))
            got["rss"].append(r["rss_growth"] / MiB)
            got["cpu"].append(r["cpu_per_job"] * 1e3)
            got["errors"].append(r["errors"])
            got["fds"].append(r["seen"]["fds"])
            for k, v in r["error_kinds"].items():
                kinds[k] = kinds.get(k, 0) + v
            shutil.rmtree(dest)
        self.knobs(job_duration=0)
        what = f"{n:,} jobs of {secs:g} s in flight in one process"
        rows = [
            report.solo(
                "P9", f"{what}: OS threads (max)", got["threads"], "one engine thread (+ main)", 2
            ),
            report.solo(
                "P9", f"{what}: client RSS growth, peak (MiB)", got["rss"], "≤ 150 MiB", 150
            ),
            report.solo(
                "P9",
                f"{what}: client CPU per job (ms)",
                got["cpu"],
                "≤ P2's" + (f" ({cpu_p2:.2f} ms, file)" if cpu_p2 else ""),
                cpu_p2,
            ),
            report.solo(
                "P9",
                f"{what}: generations that failed; open fds (max)",
                got["errors"],
                "0 failed",
                0,
                extra=f"fds max {', '.join(str(x) for x in got['fds'])} "
                f"(RLIMIT_NOFILE {_nofile()})",
            ),
        ]
        self.notes.append(
            f"P9: {n:,} generations started at once from one thread (`submit` each: POST, wait, "
            f"download to a directory), {secs:g} s of server time each, the emulator's concurrency "
            "ceiling off (max_jobs_in_flight=None); waited with `as_completed`. RSS growth: the peak "
            "(VmHWM, reset after the warm-up job) minus the RSS before the first submit. Threads and "
            "open fds: the most the driver saw in /proc/PID every 0.25 s. No SDK figure: it would "
            f"need {n:,} threads (or tasks) to hold as many jobs."
            + (
                " Failures over the runs, by kind: "
                + "; ".join(f"{v:,} × {k}" for k, v in sorted(kinds.items(), key=lambda x: -x[1]))
                + "."
                if kinds
                else ""
            )
        )
        return rows

    # ------------------------------------------------------------ P10
    def p10(self):
        n, secs = (50, 1.0) if self.quick else (200, 2.0)
        self.knobs(job_duration=secs, asset_size_bytes=None, max_jobs_in_flight=None)
        got = {k: {"ours": [], "sdk": []} for k in ("p99", "max", "threads")}
        for _ in range(self.runs):
            for client in ("ours", "sdk"):
                r = self.watched("P10", client, n=n)
                self.api_note(r)
                got["p99"][client].append(r["p99_ms"])
                got["max"][client].append(r["max_ms"])
                got["threads"][client].append(r["threads_after"] - r["threads_before"])
        self.knobs(job_duration=0)
        what = f"asyncio, a 5 ms ticker while {n} generations run"
        rows = [
            report.row(
                "P10",
                f"{what}: loop lag p99 (ms)",
                got["p99"]["ours"],
                got["p99"]["sdk"],
                "p99 ≤ 20 ms",
                target=None,
                absolute=20.0,
            ),
            report.row(
                "P10",
                f"{what}: loop lag max (ms)",
                got["max"]["ours"],
                got["max"]["sdk"],
                "",
                target=None,
            ),
            report.row(
                "P10",
                f"{what}: threads added while they run",
                got["threads"]["ours"],
                got["threads"]["sdk"],
                "no thread per call",
                target=None,
                absolute=0,
            ),
        ]
        self.notes.append(
            f"P10: {n} generations of {secs:g} s (submit, wait, fetch the image to memory) gathered on "
            "one asyncio loop beside a ticker coroutine that sleeps 5 ms and records how late it woke "
            "(loop.time()); lag quantiles over every tick of the run. Ours: `await client.submit(...)` "
            "(the client's engine fd on the loop); the SDK runs AsyncScenario with the same 3 s poll loop "
            "on asyncio.sleep and an httpx.AsyncClient for the CDN. Threads added: "
            "/proc/self/task after the run minus before it (the engine thread starts with the "
            "warm-up job, before)."
        )
        return rows


# Symbols outside our extension that say where its time goes (syscalls, page faults, copies).
_LANDMARKS = (
    "] curl_multi_perform",
    "] curl_multi_poll",
    "] do_syscall_64",
    "] asm_exc_page_fault",
    "] __memmove_avx_unaligned_erms",
    "] __libc_recv",
    "] PyBytes_FromStringAndSize",
    "] PyGILState_Ensure",
    "] take_gil",
)


def _nofile():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}" if soft == hard else f"{soft}/{hard}"
