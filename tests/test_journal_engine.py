"""The journal on the engine: Client.submit and generate_many with Client(journal=path).

The claims of tests/test_journal.py hold for the non-blocking path too: the
row is committed before the pipeline can POST, the job id is recorded (on the
engine thread) before the wait, each file with its SHA-256 once it is written,
a re-run pays nothing twice, and a process killed anywhere (mid-batch, or
between a POST and the record of its answer) is finished by the re-run with
exactly one job per item.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import pytest
from conftest import PACKAGE_PARENT, png_bytes
from test_journal import rows

import scenario_uni1 as uni1

GEN = r"^/v1/generate/"


def posts(emu) -> int:
    return emu.request_count("POST", GEN)


def cdn_gets(emu) -> int:
    return emu.request_count("GET", origin="cdn")


def download_rows(path) -> list[dict]:
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM downloads ORDER BY finished")]
    finally:
        db.close()


def sha256_file(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def asset_sha256(emu, asset_id: str) -> str:
    """SHA-256 of the asset's bytes as the emulator's CDN serves them."""
    with urllib.request.urlopen(emu.assets[asset_id]["url"], timeout=10) as resp:
        return hashlib.sha256(resp.read()).hexdigest()


def files_in(directory) -> list[str]:
    try:
        return sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        return []


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / "journal.db")


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


def _child_env(emu) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(emu.env())
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_for(predicate, timeout: float, proc=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return predicate()
        time.sleep(0.005)
    return False


# -- in process -------------------------------------------------------------------------------


def test_row_is_committed_before_the_post_and_the_job_id_before_the_wait(emu, journal, out):
    # The POST's answer is held 1 s (the job exists meanwhile): the row is
    # 'sending' then. Once the answer is in, the job id is recorded from the
    # engine thread while the job still runs (job_duration 2 s).
    emu.job_duration = 2.0
    emu.inject("POST", GEN, answer_delay=1.0, times=1)
    with emu.client(journal=journal) as c:
        gen = c.submit("a quiet harbour", download=out)
        assert _wait_for(lambda: emu.jobs_created == 1, 10)
        (row,) = rows(journal)
        assert row["state"] == "sending" and row["job_id"] is None
        assert _wait_for(lambda: gen.job is not None, 10)
        assert _wait_for(lambda: rows(journal)[0]["job_id"] is not None, 5)
        (row,) = rows(journal)
        assert not gen.done
        assert row["state"] == "submitted" and row["job_id"] == gen.job.id
        paths = gen.result(timeout=30)
    (row,) = rows(journal)
    assert row["state"] == "done"
    recorded = {r["path"]: r for r in download_rows(journal)}
    assert sorted(recorded) == sorted(os.path.abspath(p) for p in paths)
    for p in paths:
        r = recorded[os.path.abspath(p)]
        assert r["job_id"] == gen.job.id and r["asset_id"] in gen.job.asset_ids
        assert r["sha256"] == sha256_file(p) and r["size"] == os.path.getsize(p)


def test_rerun_of_finished_items_sends_no_post(emu, journal, out):
    prompts = ["a fox", "a fox", "an owl"]
    with emu.client(journal=journal) as c:
        first = [g.result(timeout=30) for g in [c.submit(p, download=out) for p in prompts]]
    assert emu.jobs_created == 3 and posts(emu) == 3
    before = {p: sha256_file(p) for paths in first for p in paths}
    with emu.client(journal=journal) as c:
        again = [g.result(timeout=30) for g in [c.submit(p, download=out) for p in prompts]]
    assert emu.jobs_created == 3 and posts(emu) == 3
    assert [list(map(str, a)) for a in again] == [list(map(str, f)) for f in first]
    assert {p: sha256_file(p) for paths in again for p in paths} == before
    assert [r["state"] for r in rows(journal)] == ["done"] * 3


def test_deleted_file_of_a_finished_item_is_fetched_again(emu, journal, out):
    with emu.client(journal=journal) as c:
        (path,) = c.submit("a lighthouse", download=out).result(timeout=30)
    digest = sha256_file(path)
    os.unlink(path)
    with emu.client(journal=journal) as c:
        (again,) = c.submit("a lighthouse", download=out).result(timeout=30)
    assert str(again) == str(path) and sha256_file(again) == digest
    assert emu.jobs_created == 1 and posts(emu) == 1


def test_changed_file_of_a_finished_item_is_not_overwritten(emu, journal, out):
    with emu.client(journal=journal) as c:
        (path,) = c.submit("a maple tree", download=out).result(timeout=30)
    with open(path, "wb") as f:
        f.write(png_bytes(color=(1, 2, 3)))
    changed = sha256_file(path)
    with emu.client(journal=journal) as c:
        gen = c.submit("a maple tree", download=out)
        with pytest.raises(FileExistsError):
            gen.result(timeout=30)
        assert sha256_file(path) == changed
    with emu.client(journal=journal) as c:
        (again,) = c.submit("a maple tree", download=out, overwrite=True).result(timeout=30)
    assert str(again) == str(path) and sha256_file(path) != changed
    assert emu.jobs_created == 1 and posts(emu) == 1


def test_uploaded_inputs_map_to_the_same_item_on_a_rerun(emu, journal, tmp_path):
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(color=(9, 99, 199)))
    with emu.client(journal=journal) as c:
        a = c.submit("a castle", image_refs=[str(ref)]).result(timeout=30)
    with emu.client(journal=journal) as c:
        b = c.submit("a castle", image_refs=[png_bytes(color=(9, 99, 199))]).result(timeout=30)
    assert len(a) == len(b) == 1
    assert emu.jobs_created == 1 and posts(emu) == 1


def test_failed_job_is_recorded_and_not_paid_again(emu, journal):
    emu.next_job_outcome("failure")
    with emu.client(journal=journal) as c:
        with pytest.raises(uni1.JobFailedError):
            c.submit("doomed").result(timeout=30)
    (row,) = rows(journal)
    assert row["state"] == "failed"
    with emu.client(journal=journal) as c:
        with pytest.raises(uni1.JobFailedError):
            c.submit("doomed").result(timeout=30)
    assert emu.jobs_created == 1 and posts(emu) == 1


def test_refused_post_removes_the_row(emu, journal):
    emu.inject("POST", GEN, status=403, times=1)
    with emu.client(journal=journal, max_retries=0) as c:
        gen = c.submit("forbidden")
        with pytest.raises(uni1.PermissionDeniedError):
            gen.result(timeout=30)
    assert rows(journal) == []


def test_other_items_jobs_are_never_adopted(emu, journal):
    # Item #1 is made by another process (its job is in no claim of this
    # one). Here #1 is attached, and #2's POST gets a 502 that created
    # nothing: the core's look finds #1's job (same input, recent), which only
    # the journal knows to be taken (exclude). #2 must get a job of its own.
    script = "import sys, scenario_uni1 as uni1\n" + (
        "with uni1.Client(journal=sys.argv[1]) as c:\n"
        "    c.submit('same again').result(timeout=30)\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, journal], check=True, env=_child_env(emu), timeout=60
    )
    (first,) = emu.jobs
    # #1's attach reads its job late: until then nothing in this process
    # holds that job (a read would claim it).
    emu.inject("GET", rf"^/v1/jobs/{first}$", delay=3.0, times=1)
    emu.inject("POST", GEN, status=502, times=1)
    with emu.client(journal=journal, settle_window=0.5) as c:
        again = c.submit("same again")
        second = c.submit("same again")
        second.result(timeout=30)
        again.result(timeout=30)
    assert again.job.id == first and second.job.id != first
    assert emu.jobs_created == 2 and posts(emu) == 3
    assert sorted(r["job_id"] for r in rows(journal)) == sorted(emu.jobs)


# -- killed processes ------------------------------------------------------------------------

BATCH = textwrap.dedent(
    """
    import sys
    import scenario_uni1 as uni1

    PROMPTS = [
        "a red fox", "a blue whale", "a red fox", "a castle", "a red fox", "a lighthouse",
        "a castle", "an owl", "a maple tree", "a harbour at dusk", "a comet", "a red fox",
    ]

    journal, out = sys.argv[1], sys.argv[2]
    with uni1.Client(journal=journal, timeout=5, settle_window=1) as client:
        for gen in client.generate_many(PROMPTS, concurrency=4, download=out):
            if gen.error is not None:
                print("error", gen.job and gen.job.id, repr(gen.error), flush=True)
                continue
            for path in gen.result():
                print("file", gen.job.id, path, flush=True)
    print("finished", flush=True)
    """
)
N_BATCH = 12


def _check_batch_outcome(emu, journal, out, stdout: str) -> None:
    lines = stdout.splitlines()
    assert lines and lines[-1] == "finished", stdout
    assert not [line for line in lines if line.startswith("error")], stdout
    printed = [line.split(" ", 2)[1:] for line in lines if line.startswith("file")]
    assert len(printed) == N_BATCH
    # Exactly N jobs, each owned by exactly one item of the journal.
    assert emu.jobs_created == N_BATCH
    assert sorted(r["job_id"] for r in rows(journal)) == sorted(emu.jobs)
    assert [r["state"] for r in rows(journal)] == ["done"] * N_BATCH
    assert sorted(job for job, _ in printed) == sorted(emu.jobs)
    # Every file intact: the bytes of its asset, as recorded.
    assert files_in(out) == sorted(os.path.basename(p) for _, p in printed)
    recorded = {r["path"]: r for r in download_rows(journal)}
    for job_id, path in printed:
        (asset_id,) = emu.job(job_id)["metadata"]["assetIds"]
        digest = sha256_file(path)
        assert digest == asset_sha256(emu, asset_id)
        assert recorded[os.path.abspath(path)]["sha256"] == digest


@pytest.mark.parametrize("answer_delay", [0.0, 0.6], ids=["fast-answers", "slow-answers"])
def test_sigkill_mid_generate_many_then_rerun_pays_nothing_twice(emu, tmp_path, answer_delay):
    emu.job_duration = 0.4
    if answer_delay:
        # Every POST's job is created at once and its answer held: at the
        # kill, some items are 'sending' with a job on the server.
        emu.inject("POST", GEN, answer_delay=answer_delay, times=None)
    script = tmp_path / "batch.py"
    script.write_text(BATCH)
    journal, out = str(tmp_path / "batch.db"), str(tmp_path / "renders")
    cmd = [sys.executable, str(script), journal, out]
    env = _child_env(emu)

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        # Killed with jobs in flight and files already written.
        reached = _wait_for(
            lambda: emu.jobs_created >= 6 and len(files_in(out)) >= 3, 50, proc=proc
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        watchdog.cancel()
        proc.wait(10)
        stderr = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    assert reached and proc.returncode == -signal.SIGKILL, stderr
    killed_at = emu.jobs_created
    states = [r["state"] for r in rows(journal)]
    assert killed_at < N_BATCH and "done" in states and set(states) != {"done"}
    if answer_delay:
        # Jobs whose answer the child never got: the re-run must adopt them.
        assert states.count("sending") >= 1

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    _check_batch_outcome(emu, journal, out, done.stdout)
    print(f"rows at the kill: {states}; jobs then {killed_at}, after the re-run {emu.jobs_created}")

    # A third run: nothing sent, nothing new.
    sent = posts(emu)
    third = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert third.returncode == 0, third.stderr
    assert posts(emu) == sent and emu.jobs_created == N_BATCH


ONE = textwrap.dedent(
    """
    import sys
    import scenario_uni1 as uni1

    journal, out = sys.argv[1], sys.argv[2]
    with uni1.Client(journal=journal, timeout=5, settle_window=1) as client:
        gen = client.submit("held answer", download=out)
        for path in gen.result(timeout=60):
            print("file", gen.job.id, path, flush=True)
    print("finished", flush=True)
    """
)


def _kill_one(emu, tmp_path, until) -> tuple[list[str], str, str]:
    script = tmp_path / "one.py"
    script.write_text(ONE)
    journal, out = str(tmp_path / "one.db"), str(tmp_path / "out")
    cmd = [sys.executable, str(script), journal, out]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_child_env(emu)
    )
    try:
        reached = _wait_for(until, 20, proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert reached and proc.returncode == -signal.SIGKILL
    return cmd, journal, out


def test_kill_between_the_post_and_the_record_of_its_job_adopts_the_job(emu, tmp_path):
    # The server created the job and holds the answer: the child dies with
    # its row 'sending'. The re-run's engine finds that job and adopts it.
    emu.inject("POST", GEN, answer_delay=5.0, times=1)
    cmd, journal, out = _kill_one(emu, tmp_path, lambda: emu.jobs_created == 1)
    assert [(r["state"], r["job_id"]) for r in rows(journal)] == [("sending", None)]
    (created,) = emu.jobs
    emu.clear_faults()

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_child_env(emu))
    assert done.returncode == 0, done.stderr
    assert emu.jobs_created == 1 and posts(emu) == 1
    (row,) = rows(journal)
    assert row["job_id"] == created and row["state"] == "done"
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("file")]
    _, job_id, path = line.split(" ", 2)
    assert job_id == created
    (asset_id,) = emu.job(created)["metadata"]["assetIds"]
    assert sha256_file(path) == asset_sha256(emu, asset_id)


ONE_WITH_UPLOAD = textwrap.dedent(
    """
    import sys
    import scenario_uni1 as uni1

    journal, out, ref = sys.argv[1], sys.argv[2], sys.argv[3]
    with uni1.Client(journal=journal, timeout=5, settle_window=1) as client:
        gen = client.submit("held answer, with a reference", image_refs=[ref], download=out)
        for path in gen.result(timeout=60):
            print("file", gen.job.id, path, flush=True)
    print("finished", flush=True)
    """
)


def test_kill_between_the_post_and_its_answer_with_an_upload_adopts_the_job(emu, tmp_path):
    # The item uploads a reference first: before its POST the engine hands the
    # journal the asset id it will carry (on_ready), so the re-run can match
    # the job the dead process paid for. Before: the row kept the file's hash,
    # the re-run could not match, and it paid for a second job.
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(color=(7, 8, 9)))
    script = tmp_path / "one_up.py"
    script.write_text(ONE_WITH_UPLOAD)
    journal, out = str(tmp_path / "up.db"), str(tmp_path / "out")
    cmd = [sys.executable, str(script), journal, out, str(ref)]
    emu.inject("POST", GEN, answer_delay=5.0, times=1)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_child_env(emu)
    )
    try:
        reached = _wait_for(lambda: emu.jobs_created == 1, 20, proc=proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert reached
    ((state, job_id, request),) = [
        (r["state"], r["job_id"], json.loads(r["request_json"])) for r in rows(journal)
    ]
    assert (state, job_id) == ("sending", None)
    assert request["image_refs"][0].startswith("asset_")  # the id, recorded before the POST
    (created,) = emu.jobs
    emu.clear_faults()

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_child_env(emu))
    assert done.returncode == 0, done.stderr
    assert emu.jobs_created == 1 and posts(emu) == 1
    (row,) = rows(journal)
    assert row["job_id"] == created and row["state"] == "done"


def test_kill_while_the_post_is_still_landing_waits_for_it_then_adopts(emu, tmp_path):
    # The connection drops and the server creates the job 1.5 s later (a
    # backend finishing a request whose client went away). The child dies
    # before that; the re-run starts at once, when the list shows nothing yet:
    # it must wait for the POST to land, not send a second one.
    emu.inject("POST", GEN, action="drop_after", create_after=1.5, times=1)
    cmd, journal, out = _kill_one(emu, tmp_path, lambda: posts(emu) == 1)
    assert emu.jobs_created == 0
    assert [r["state"] for r in rows(journal)] == ["sending"]

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=_child_env(emu))
    assert done.returncode == 0, done.stderr
    assert emu.jobs_created == 1 and posts(emu) == 1
    (row,) = rows(journal)
    assert row["job_id"] == list(emu.jobs)[0] and row["state"] == "done"


def test_row_recorded_before_its_uploads_is_sent_by_the_blocking_path_and_resume(
    emu, journal, tmp_path
):
    # start_generation records an item with inputs to upload before the
    # engine uploads them: its row holds their content hashes, not asset ids.
    # generate() and resume() on such a row left 'sending' must not take those
    # for a request to look for; generate() sends it (nothing matches it).
    from scenario_uni1 import _journal

    ref = png_bytes(color=(4, 5, 6))
    key = {"sha256": hashlib.sha256(ref).hexdigest(), "mime_type": "image/png"}
    request = {
        "prompt": "a kite",
        "source": None,
        "image_refs": [key],
        "aspect_ratio": None,
        "output_format": "png",
        "web_search": False,
    }
    fp = _journal.fingerprint({**request, "project_id": None})
    with emu.client(journal=journal) as c:
        c._journal._begin_sending(fp, 1, request)
        assert c.resume(timeout=10) == []
    assert rows(journal) == []
    with emu.client(journal=journal) as c:
        c._journal._begin_sending(fp, 1, request)
    with emu.client(journal=journal) as c:
        job = c.generate("a kite", image_refs=[ref])
    (row,) = rows(journal)
    assert row["fingerprint"] == fp and row["job_id"] == job.id
    assert emu.jobs_created == 1


def test_items_sent_again_after_the_ceiling_keep_their_place(emu, journal, out):
    # generate_many sends an item again after the ceiling's 429 (which created
    # nothing): its row is deleted and its occurrence reused, so a re-run of
    # the same batch maps every item to its job and sends nothing.
    emu.job_duration = 0.3
    emu.max_in_flight = 2
    prompts = ["a red fox"] * 6 + ["an owl"] * 2
    with emu.client(journal=journal, max_retries=0) as c:
        batch = c.generate_many(prompts, concurrency=6, download=out)
        gens = list(batch)
    assert batch.ceiling_hits > 0
    assert [g.error for g in gens] == [None] * 8
    assert emu.jobs_created == 8
    rows_after = rows(journal)
    assert sorted(r["occurrence"] for r in rows_after) == [1, 1, 2, 2, 3, 4, 5, 6]
    assert [r["state"] for r in rows_after] == ["done"] * 8
    sent = posts(emu)
    with emu.client(journal=journal, max_retries=0) as c:
        again = list(c.generate_many(prompts, concurrency=6, download=out))
    assert [g.error for g in again] == [None] * 8
    assert posts(emu) == sent and emu.jobs_created == 8


def test_a_chaotic_batch_then_a_clean_rerun_pays_each_item_once(tmp_path):
    # 10% of all requests faulted, every kind (lost answers, jobs created
    # after a failed POST, resets, 5xx, lying CDN bodies...): whatever the
    # first run could not finish, the re-run finishes, and every job the
    # server created belongs to exactly one item.
    from scenario_uni1.emulator import Emulator

    n = 60
    prompts = [f"chaos with a journal {i % (n // 2)}" for i in range(n)]  # each one twice
    journal, out = str(tmp_path / "chaos.db"), str(tmp_path / "out")
    settings = {"timeout": 5, "settle_window": 2.5, "backoff_base": 0.02, "backoff_max": 0.5}
    with Emulator(job_duration=0.3, record_requests=False) as emu:
        emu.chaos(0.1, seed=7)
        with emu.client(journal=journal, **settings) as c:
            first = list(c.generate_many(prompts, concurrency=12, download=out))
        assert len(first) == n
        emu.chaos(0)
        while emu.late_pending:  # a job created after its failed POST is still to come
            time.sleep(0.05)
        with emu.client(journal=journal, **settings) as c:
            again = list(c.generate_many(prompts, concurrency=12, download=out))
        assert [g.error for g in again] == [None] * n
        created = [job_id for job_id, _ in emu.created_jobs()]
        owned = [r["job_id"] for r in rows(journal)]
        assert len(created) == n and sorted(owned) == sorted(created)
        assert [r["state"] for r in rows(journal)] == ["done"] * n
        for gen in again:
            for path in gen.result():
                asset_id = os.path.basename(str(path)).partition(".")[0]
                assert pathlib.Path(path).read_bytes() == emu.asset_bytes(asset_id)
