"""Client work per job in counts that do not depend on the machine's load.

`python -m bench.counts [--jobs N] [--callgrind]`: N jobs of 1 MiB to memory
(job_duration=0), once through generate_many(concurrency=10) from one thread
and once through blocking calls from 10 threads, each in a fresh process of
our client, against an emulator in this process. Per job: minor page faults,
voluntary and involuntary context switches (getrusage), and with --callgrind
the instructions of the client's user space (valgrind counts them, so the
figure is the same on an idle or a busy machine; the kernel's share, which
the faults and switches stand for, is not in it). Each figure is the run with
N jobs minus the same run with none, over N, so start-up and imports cancel
out. A tool for comparing before/after a change; not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable

WORKER = r"""
import json, resource, sys, threading
import scenario_uni1 as uni1
mode, n = sys.argv[1], int(sys.argv[2])
c = uni1.Client()
def one(i):
    job = c.generate(f"counts {i}")
    job.wait()
    return [im.data for im in job.images()]
one(-1)
list(c.generate_many([f"warm {i}" for i in range(2)], concurrency=2))
r0 = resource.getrusage(resource.RUSAGE_SELF)
if mode == "engine":
    for gen in c.generate_many([f"counts {i}" for i in range(n)], concurrency=10):
        gen.result()
else:
    def chain(k):
        for i in range(k, n, 10):
            one(i)
    ts = [threading.Thread(target=chain, args=(k,)) for k in range(10)]
    for t in ts: t.start()
    for t in ts: t.join()
r1 = resource.getrusage(resource.RUSAGE_SELF)
print("RESULT", json.dumps({k: getattr(r1, k) - getattr(r0, k)
      for k in ("ru_minflt", "ru_nvcsw", "ru_nivcsw", "ru_utime", "ru_stime")}))
"""


def run(env, mode, n, callgrind):
    cmd = [PY, "-c", WORKER, mode, str(n)]
    out_file = None
    if callgrind:
        fd, out_file = tempfile.mkstemp(prefix="callgrind.")
        os.close(fd)
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", *cmd]
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise RuntimeError(p.stderr[-3000:])
    res = json.loads(line[-1][7:])
    if callgrind:
        m = re.search(r"Collected : (\d+)", p.stderr) or re.search(r"refs:\s+([\d,]+)", p.stderr)
        res["instructions"] = int(m.group(1).replace(",", "")) if m else None
        os.unlink(out_file)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.counts", description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--modes", default="engine,blocking")
    a = ap.parse_args(argv)
    from scenario_uni1.emulator import Emulator

    with Emulator(job_duration=0, asset_size_bytes=1 << 20) as emu:
        emu.record_requests = False
        env = dict(os.environ)
        env.update(emu.env())
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for mode in a.modes.split(","):
            base = run(env, mode, 0, a.callgrind)
            full = run(env, mode, a.jobs, a.callgrind)
            per = {k: (full[k] - base[k]) / a.jobs for k in full if full[k] is not None}
            print(
                f"{mode}: per job "
                + ", ".join(f"{k.removeprefix('ru_')} {v:,.4g}" for k, v in sorted(per.items()))
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
