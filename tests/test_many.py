"""generate_many, as_completed and wait: many generations and jobs on one engine.

No thread per job (a thousand jobs watched with the process's thread count
unchanged), completion in the server's order, failures yielded rather than
raised, the team's concurrency ceiling (429) met by holding submissions
instead of failing or paying twice, and Ctrl-C within 100 ms.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import pytest
from conftest import GENERATE_PATH, PACKAGE_PARENT

import scenario_uni1 as uni1


def os_threads() -> int:
    """Threads of this process, C threads included (Linux: /proc/self/task)."""
    return len(os.listdir("/proc/self/task"))


def _prompts_of_jobs(emu) -> list:
    return [job["metadata"]["input"]["prompt"] for job in emu.jobs.values()]


def _submitted(gen):
    """gen, once its job exists on the server (the POST is the engine's, in the background)."""
    deadline = time.monotonic() + 10
    while gen.job is None and not gen.done and time.monotonic() < deadline:
        time.sleep(0.002)
    assert gen.job is not None, gen
    return gen


def test_as_completed_watches_1000_jobs_without_a_thread_per_job(uni1_emulator):
    emu = uni1_emulator
    emu.job_duration = 1.0
    emu.record_requests = False
    client = emu.client(timeout=30)
    jobs = [client.generate(f"job {i}") for i in range(1000)]
    client.submit("warm up").result(timeout=30)  # the client's one engine thread exists
    threads_before = os_threads()
    python_threads_before = threading.active_count()
    most = threads_before
    seen = []
    for job in client.as_completed(jobs, timeout=120):
        seen.append(job)
        most = max(most, os_threads())
        assert threading.active_count() == python_threads_before
    print(f"threads: {threads_before} before, at most {most} while 1,000 jobs were watched")
    assert most == threads_before
    assert len(seen) == 1000 and {j.id for j in seen} == {j.id for j in jobs}
    assert all(j.status == "success" for j in seen)
    client.close()


def test_completion_order_follows_the_server(client, emu):
    # Durations shuffled against submission order; each job keeps the
    # duration it was created with. 0.4 s apart: far more than a poll's
    # jitter, so the order seen is the order in which the server finished.
    durations = [2.0, 0.4, 1.6, 0.8, 2.4, 1.2]
    jobs = []
    for d in durations:
        emu.job_duration = d
        jobs.append(client.generate(f"{d} s"))
    order = [job.id for job in client.as_completed(jobs, timeout=60)]
    by_server = [job.id for _, job in sorted(zip(durations, jobs), key=lambda p: p[0])]
    assert order == by_server


def test_as_completed_mixes_jobs_and_generations_and_yields_failures(client, emu):
    emu.next_job_outcome("failure")
    failed_job = client.generate("fails")
    done_job = client.generate("already done")
    done_job.wait(timeout=30)
    emu.next_job_outcome("failure")
    failed_gen = _submitted(client.submit("a failing generation"))
    gen = client.submit("a generation")
    items = [failed_job, done_job, gen, failed_gen]
    seen = list(uni1.as_completed(items, timeout=60))
    assert len(seen) == 4
    assert seen[0] is done_job  # terminal before the call: first, without a request
    # Generations come back themselves; a Job as its final state, for the same id.
    assert {id(x) for x in seen} >= {id(gen), id(failed_gen)}
    (failed_seen,) = [x for x in seen if isinstance(x, uni1.Job) and x.id == failed_job.id]
    assert failed_seen.status == "failure" and failed_seen.error
    assert isinstance(failed_gen.error, uni1.JobFailedError)
    assert gen.error is None and len(gen.result(0)) == 1


def test_wait_returns_everything_in_input_order(client, emu):
    emu.job_duration = 0.6
    slow = client.generate("slow")
    emu.job_duration = 0.1
    fast = client.submit("fast")
    got = client.wait([slow, fast], timeout=30)
    assert got[0].id == slow.id and got[0].status == "success"
    assert got[1] is fast and fast.done and fast.error is None


def test_the_deadline_raises_timeout_error(client, emu):
    emu.next_job_outcome("stuck")
    stuck = client.generate("stuck")
    fast = client.submit("fast")
    it = client.as_completed([stuck, fast], timeout=1.0)
    assert next(it) is fast
    t0 = time.monotonic()
    with pytest.raises(uni1.TimeoutError):
        next(it)
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(uni1.TimeoutError):
        client.wait([stuck], timeout=0.2)


def test_a_loop_left_early_stops_following_the_jobs_but_never_cancels_them(client, emu):
    emu.next_job_outcome("stuck")
    stuck = client.generate("followed, then left")
    path = rf"^/v1/jobs/{stuck.id}$"
    it = client.as_completed([stuck], timeout=60)
    time.sleep(1.5)  # the engine polls it meanwhile
    assert emu.request_count("GET", path) >= 1
    it.close()  # also what dropping it does
    time.sleep(0.3)
    polled = emu.request_count("GET", path)
    time.sleep(2.0)
    assert emu.request_count("GET", path) == polled  # no poll after close()
    assert emu.request_count("POST", r"/cancel") == 0  # the job is not ours to stop
    with pytest.raises(uni1.TimeoutError):
        client.wait([stuck], timeout=0.3)
    time.sleep(0.3)
    polled = emu.request_count("GET", path)
    time.sleep(2.0)
    assert emu.request_count("GET", path) == polled  # nor after wait() timed out
    assert client.job(stuck.id).status not in ("canceled", "cancelled")


def test_as_completed_refuses_what_it_cannot_watch(client, emu):
    gen = client.submit("ok")
    with pytest.raises(uni1.InvalidRequestError, match="Jobs and Generations"):
        client.as_completed([gen, "job_123"])
    with pytest.raises(uni1.InvalidRequestError):
        client.wait([gen], timeout="soon")
    gen.result(timeout=30)


def test_generate_many_yields_every_item_as_it_ends(client, emu, tmp_path):
    emu.next_job_outcome("failure")
    requests = [
        "first (fails)",
        {"prompt": "second", "aspect_ratio": "1:1"},
        {"prompt": "third", "source": str(tmp_path / "missing.png")},  # bad input
        {"prompt": "fourth", "download": str(tmp_path / "elsewhere")},
        "fifth",
    ]
    got = list(client.generate_many(requests, concurrency=1, download=tmp_path))
    assert sorted(g.prompt for g in got) == sorted(
        r if isinstance(r, str) else r["prompt"] for r in requests
    )
    by_prompt = {g.prompt: g for g in got}
    assert isinstance(by_prompt["first (fails)"].error, uni1.JobFailedError)
    bad = by_prompt["third"]
    assert isinstance(bad.error, uni1.InvalidRequestError) and bad.job is None
    assert bad.stage == "failed" and bad.done
    with pytest.raises(uni1.InvalidRequestError):
        bad.result()
    assert by_prompt["second"].request == requests[1]
    assert by_prompt["fourth"].result(0)[0].parent == tmp_path / "elsewhere"
    assert by_prompt["fifth"].result(0)[0].parent == tmp_path
    assert emu.jobs_created == 4  # the bad item sent nothing


def test_generate_many_keeps_at_most_concurrency_in_flight(client, emu):
    # The server refuses a fourth job in flight: with concurrency=3 that never happens.
    emu.max_jobs_in_flight = 3
    emu.job_duration = 0.3
    many = client.generate_many([f"p{i}" for i in range(12)], concurrency=3)
    got = list(many)
    assert len(got) == 12 and all(g.error is None for g in got)
    assert many.ceiling_hits == 0
    assert emu.request_count("POST", GENERATE_PATH) == emu.jobs_created == 12  # none refused


def test_a_ceiling_of_5_with_concurrency_20_makes_each_job_once(uni1_emulator):
    emu = uni1_emulator
    emu.max_jobs_in_flight = 5
    emu.job_duration = 0.3
    client = emu.client(timeout=30)
    prompts = [f"item {i}" for i in range(100)]
    many = client.generate_many(prompts, concurrency=20)
    got = list(many)
    assert len(got) == 100
    failures = [(g.prompt, g.error) for g in got if g.error is not None]
    assert failures == []
    made = collections.Counter(_prompts_of_jobs(emu))
    assert emu.jobs_created == 100 and len(made) == 100
    assert max(made.values()) == 1  # no duplicates
    refused = emu.request_count("POST", GENERATE_PATH) - emu.jobs_created
    print(f"ceiling 5, concurrency 20, 100 items: {refused} POSTs refused (429), 0 duplicates")
    assert many.ceiling_hits > 0  # the ceiling was met, and handled
    # Mostly the first burst is refused (15 POSTs over the ceiling, each with
    # the core's own retries); after the 429 named the ceiling, submissions
    # wait for a slot instead of knocking again. Knocking once per item and
    # per probe measured 142 here.
    assert refused < 100, refused
    client.close()


def test_generate_many_takes_a_lazy_iterable_and_can_stop_early(client, emu):
    produced = []

    def requests():
        for i in range(50):
            produced.append(i)
            yield f"lazy {i}"

    many = client.generate_many(requests(), concurrency=2)
    first = next(iter(many))
    many.close()
    assert first.error is None
    assert len(produced) <= 3  # nothing is read far ahead of what is in flight
    rest = list(many)  # what was in flight when it closed: yielded, nothing new
    assert len(produced) == 1 + len(rest) == emu.jobs_created
    assert all(g.error is None for g in rest)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": 2.5},
        {"progress": "yes"},
        {"download": "a\0b"},
    ],
)
def test_generate_many_bad_arguments_raise_before_anything_is_sent(client, emu, kwargs):
    with pytest.raises(uni1.InvalidRequestError):
        client.generate_many(["a", "b"], **kwargs)
    assert emu.requests == []


@pytest.mark.parametrize("requests", ["one prompt", [1, "a"], [{"promt": "typo"}], [{}]])
def test_generate_many_bad_requests_raise_before_anything_is_sent(client, emu, requests):
    with pytest.raises(uni1.InvalidRequestError):
        client.generate_many(requests)
    assert emu.requests == []


def test_progress_line_without_tqdm(client, emu, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if not installed
    list(client.generate_many(["a", "b", "c"], concurrency=3, progress=True))
    err = capsys.readouterr().err
    assert "3/3 done" in err


def test_progress_bar_with_tqdm(client, emu, monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.closed, self.postfix = total, 0, False, None
            bars.append(self)

        def update(self, n):
            self.n += n

        def set_postfix(self, ordered_dict=None, refresh=True, **kw):
            self.postfix = kw

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    emu.next_job_outcome("failure")
    list(client.generate_many(["a", "b", "c"], concurrency=1, progress=True))
    assert len(bars) == 1
    bar = bars[0]
    assert (bar.total, bar.n, bar.closed) == (3, 3, True)
    assert bar.postfix == {"failed": 1, "in_flight": 0}  # tqdm shows the rate and time left


CHILD = textwrap.dedent(
    """
    import sys, time
    import scenario_uni1 as uni1
    url, key, secret, op = sys.argv[1:5]
    c = uni1.Client(key, secret, base_url=url)
    job = c.generate("never ends")
    gen = c.submit("never ends either")
    print("READY", flush=True)
    try:
        if op == "as_completed":
            for _ in c.as_completed([job, gen]):
                pass
        elif op == "wait":
            c.wait([job, gen])
        elif op == "generate_many":
            for _ in c.generate_many(["never ends, third"]):
                pass
        print("RETURNED", flush=True)
    except KeyboardInterrupt:
        print("KI", time.monotonic(), flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("op", ["as_completed", "wait", "generate_many"])
def test_ctrl_c_within_100ms(uni1_emulator, op):
    latencies = []
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    for _ in range(3):
        uni1_emulator.next_job_outcome("stuck", times=3)
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, uni1_emulator.url, "emu-key", "emu-secret", op],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout.readline().strip() == "READY"
            time.sleep(0.4)  # blocked inside the call
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().split()
            proc.wait(10)
        finally:
            proc.kill()
        assert line and line[0] == "KI", line
        latencies.append(float(line[1]) - t0)
    print(f"Ctrl-C in {op}: " + ", ".join(f"{x * 1000:.1f} ms" for x in latencies))
    assert min(latencies) < 0.100, latencies


def test_generate_many_with_a_journal_meets_the_ceiling_and_a_rerun_pays_nothing(
    uni1_emulator, tmp_path
):
    emu = uni1_emulator
    emu.max_jobs_in_flight = 3
    emu.job_duration = 0.3
    prompts = [f"journaled {i}" for i in range(20)]
    journal = tmp_path / "journal.sqlite"
    # max_retries=0: the core does not absorb the ceiling's 429s with its own
    # retries (which, timing permitting, could hide them all from generate_many).
    with emu.client(timeout=30, journal=journal, max_retries=0) as client:
        many = client.generate_many(prompts, concurrency=10, download=tmp_path / "out")
        got = list(many)
    assert many.ceiling_hits > 0
    assert [g.error for g in got] == [None] * 20
    assert emu.jobs_created == 20
    assert max(collections.Counter(_prompts_of_jobs(emu)).values()) == 1
    # The same batch again with the same journal: every item is done, nothing is sent.
    posts = emu.request_count("POST", GENERATE_PATH)
    with emu.client(timeout=30, journal=journal) as client:
        again = list(client.generate_many(prompts, concurrency=10, download=tmp_path / "out"))
    assert [g.error for g in again] == [None] * 20
    assert emu.jobs_created == 20 and emu.request_count("POST", GENERATE_PATH) == posts
    assert sorted(p for g in again for p in g.result(0)) == sorted(
        p for g in got for p in g.result(0)
    )


@pytest.mark.parametrize("mode", ["for", "async for"])
def test_a_ceiling_held_by_other_work_is_waited_for_not_hammered(uni1_emulator, mode):
    emu = uni1_emulator
    emu.max_jobs_in_flight = 1
    emu.job_duration = 1.5
    other = emu.client().generate("another program's job")  # holds the team's one slot
    emu.job_duration = 0.1
    # No retries in the core: every 429 reaches generate_many at once.
    with emu.client(timeout=30, max_retries=0) as client:
        many = client.generate_many(["ours"], concurrency=4)
        t0 = time.monotonic()
        if mode == "for":
            got = list(many)
        else:
            import asyncio

            async def main():
                return [g async for g in many]

            got = asyncio.run(main())
        elapsed = time.monotonic() - t0
    assert [g.error for g in got] == [None] and got[0].job.status == "success"
    # Refused while the other job ran (1.5 s): sent again after 1 s, then 2 s
    # more: two refusals, not one every few milliseconds.
    refused = emu.request_count("POST", GENERATE_PATH) - emu.jobs_created
    assert many.ceiling_hits == refused == 2, (many.ceiling_hits, refused)
    assert 2.5 < elapsed < 10, elapsed
    assert emu.jobs_created == 2 and emu.job(other.id)["status"] == "success"
