"""The submission journal: Client(journal=path), resume(), the CLI's --journal.

Every claim of the journal has a test that fails without it: the record is
committed before the POST, a re-run sends no POST and fetches no file it has,
identical requests are distinct items, interrupted sends are reconciled (the
job adopted, or sent again exactly once), downloads carry their SHA-256, no
credential is ever written, a torn write loses nothing committed before it,
and a batch killed with SIGKILL finishes on the re-run with exactly one job
per item.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import PACKAGE_PARENT, journal_item, png_bytes
from PIL import Image as PILImage

import scenario_uni1 as uni1
from scenario_uni1 import _journal, cli

ROOT = PACKAGE_PARENT  # what a child puts on PYTHONPATH to import the package under test
GEN = r"^/v1/generate/"
LISTING = r"^/v1/jobs$"


def posts(emu) -> int:
    return emu.request_count("POST", GEN)


def cdn_gets(emu) -> int:
    return emu.request_count("GET", origin="cdn")


def rows(path) -> list[dict]:
    """The submissions rows, read through a connection of our own (committed data only)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [
            dict(r) for r in db.execute("SELECT * FROM submissions ORDER BY created, occurrence")
        ]
    finally:
        db.close()


def download_rows(path) -> list[dict]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM downloads ORDER BY finished")]
    finally:
        db.close()


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def images_in(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if not n.startswith("."))


@pytest.fixture
def journal(tmp_path):
    return str(tmp_path / "journal.db")


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


@pytest.fixture(autouse=True)
def _short_settle_window(emu, monkeypatch):
    """Clients of these tests look for an uncertain POST's job for 0.5 s, not 20.

    Here a job that a failed POST created is in the list at once, or never;
    jobs that appear late are tests/test_exactly_once.py's.
    """
    make = emu.client

    def client(**kw):
        kw.setdefault("settle_window", 0.5)
        return make(**kw)

    monkeypatch.setattr(emu, "client", client)


def batch(emu, journal, out, prompts, **client_kw):
    """Generate and download each prompt in turn; the job ids and the paths."""
    client_kw.setdefault("timeout", 10.0)
    with emu.client(journal=journal, **client_kw) as c:
        ids, paths = [], []
        for prompt in prompts:
            job = c.generate(prompt)
            ids.append(job.id)
            paths += [str(p) for p in job.download(out, timeout=20)]
        return ids, paths


# -- the record comes first ---------------------------------------------------------------


def test_row_is_committed_before_the_post(emu, journal):
    seen = []
    with emu.client(journal=journal) as c:
        real_submit = c._submit

        def spy(*args, **kwargs):
            # Another connection sees only what was committed: the row must be
            # there, in 'sending', before anything goes on the wire.
            seen.append((rows(journal), posts(emu)))
            return real_submit(*args, **kwargs)

        c._submit = spy
        job = c.generate("recorded first", aspect_ratio="16:9")
    (before, posts_then) = seen[0]
    assert posts_then == 0
    assert len(before) == 1
    assert before[0]["state"] == "sending" and before[0]["job_id"] is None
    assert '"prompt":"recorded first"' in before[0]["request_json"]
    assert abs(before[0]["sent_at"] - time.time()) < 30
    (after,) = rows(journal)
    assert after["state"] == "submitted" and after["job_id"] == job.id


def test_row_is_in_sending_while_the_server_holds_the_post(emu, journal):
    emu.inject("POST", GEN, delay=0.6, times=1)
    with emu.client(journal=journal) as c:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("job", c.generate("slow server")))
        t.start()
        deadline = time.monotonic() + 5
        while posts(emu) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        during = rows(journal)
        created_during = emu.jobs_created
        t.join(10)
    assert created_during == 0
    assert [r["state"] for r in during] == ["sending"]
    assert rows(journal)[0]["job_id"] == result["job"].id


def test_a_lost_post_leaves_the_row_in_sending(emu, journal):
    emu.inject("POST", GEN, action="drop_before", times=None)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises((uni1.ConnectionError, uni1.SubmissionUncertainError)),
    ):
        c.generate("lost on the way")
    (row,) = rows(journal)
    assert row["state"] == "sending" and row["job_id"] is None
    assert emu.jobs_created == 0


@pytest.mark.parametrize("status", (400, 403, 404))
def test_a_refused_post_removes_the_row(emu, journal, status):
    emu.inject("POST", GEN, status=status, times=1)
    with emu.client(journal=journal, max_retries=0) as c, pytest.raises(uni1.APIError):
        c.generate("refused")
    assert rows(journal) == []


def test_an_invalid_request_records_nothing(emu, journal):
    with emu.client(journal=journal) as c, pytest.raises(uni1.InvalidRequestError):
        c.generate("bad ratio", aspect_ratio="5:4")
    assert rows(journal) == []
    assert posts(emu) == 0


# -- re-running ----------------------------------------------------------------------------


def test_rerun_sends_no_post_and_fetches_no_file(emu, journal, out):
    prompts = ["a fox", "a whale", "a castle"]
    ids1, paths1 = batch(emu, journal, out, prompts)
    assert emu.jobs_created == 3 and posts(emu) == 3
    fetched = cdn_gets(emu)
    assert fetched >= 3
    ids2, paths2 = batch(emu, journal, out, prompts)
    assert ids2 == ids1 and paths2 == paths1
    assert emu.jobs_created == 3 and posts(emu) == 3
    assert cdn_gets(emu) == fetched  # every file was there, intact: none fetched again
    assert [r["state"] for r in rows(journal)] == ["done"] * 3


def test_identical_requests_are_separate_items(emu, journal, out):
    prompts = ["the same"] * 3 + ["another"] + ["the same"]
    ids1, paths1 = batch(emu, journal, out, prompts)
    assert len(set(ids1)) == 5 and emu.jobs_created == 5
    assert len(set(paths1)) == 5
    same = [r for r in rows(journal) if '"prompt":"the same"' in r["request_json"]]
    assert sorted(r["occurrence"] for r in same) == [1, 2, 3, 4]
    assert len({r["fingerprint"] for r in same}) == 1
    ids2, _ = batch(emu, journal, out, prompts)
    assert ids2 == ids1
    assert emu.jobs_created == 5 and posts(emu) == 5


def test_a_longer_rerun_submits_only_the_new_items(emu, journal, out):
    ids1, _ = batch(emu, journal, out, ["one", "two", "two"])
    ids2, _ = batch(emu, journal, out, ["one", "two", "two", "two", "three"])
    assert ids2[:3] == ids1
    assert emu.jobs_created == 5 and posts(emu) == 5


def test_uploaded_inputs_are_fingerprinted_by_content(emu, journal, tmp_path):
    picture = tmp_path / "in.png"
    picture.write_bytes(png_bytes(40, 40))
    with emu.client(journal=journal) as c:
        first = c.generate("edit it", source=str(picture), image_refs=[png_bytes(8, 8)])
    uploads = emu.request_count("POST", r"^/v1/assets$")
    assert uploads == 2
    with emu.client(journal=journal) as c:
        again = c.generate("edit it", source=str(picture), image_refs=[png_bytes(8, 8)])
        # Other bytes are another request.
        other = c.generate("edit it", source=png_bytes(41, 40), image_refs=[png_bytes(8, 8)])
    assert again.id == first.id and other.id != first.id
    assert emu.request_count("POST", r"^/v1/assets$") == uploads + 2  # only the new item's
    assert emu.jobs_created == 2


def test_project_id_is_part_of_the_item(emu, journal):
    with emu.client(journal=journal, project_id="proj_a") as c:
        a = c.generate("per project")
    with emu.client(journal=journal, project_id="proj_b") as c:
        b = c.generate("per project")
    assert a.id != b.id and emu.jobs_created == 2


def test_threads_sharing_a_journaled_client(emu, journal):
    prompts = [f"thread item {i % 5}" for i in range(20)]

    def submit_all():
        with emu.client(journal=journal) as c:
            jobs = [None] * len(prompts)

            def work(i):
                jobs[i] = c.generate(prompts[i])

            threads = [threading.Thread(target=work, args=(i,)) for i in range(len(prompts))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            return jobs

    first = submit_all()
    assert len({j.id for j in first}) == 20 and emu.jobs_created == 20
    second = submit_all()
    assert {j.id for j in second} == {j.id for j in first}
    for a, b in zip(first, second):  # identical requests are interchangeable, others are not
        assert a.raw["metadata"]["input"] == b.raw["metadata"]["input"]
    assert emu.jobs_created == 20 and posts(emu) == 20


def test_run_marks_the_item_done(emu, journal):
    with emu.client(journal=journal) as c:
        (image,) = c.run("in memory", timeout=20)
        assert image.data
    assert [r["state"] for r in rows(journal)] == ["done"]
    with emu.client(journal=journal) as c:
        assert c.resume() == []
        (again,) = c.run("in memory", timeout=20)
    assert again.data == image.data and emu.jobs_created == 1


# -- interrupted sends -------------------------------------------------------------------------


def test_sending_row_whose_job_exists_is_adopted(emu, journal):
    # The POST creates the job but its answer is lost, and the job list
    # cannot be read: the client cannot tell, and says so.
    emu.inject("POST", GEN, action="drop_after", times=1)
    emu.inject("GET", LISTING, status=500, times=None)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises(uni1.SubmissionUncertainError),
    ):
        c.generate("created, answer lost")
    assert emu.jobs_created == 1
    (row,) = rows(journal)
    assert row["state"] == "sending" and row["job_id"] is None
    emu.clear_faults()
    (created,) = emu.jobs
    with emu.client(journal=journal) as c:
        job = c.generate("created, answer lost")
    assert job.id == created
    assert emu.jobs_created == 1 and posts(emu) == 1
    (row,) = rows(journal)
    assert row["state"] == "submitted" and row["job_id"] == created


def test_lost_answer_reconciled_by_the_core_is_recorded(emu, journal):
    # The listing works: the core finds the job itself and the journal gets its id.
    emu.inject("POST", GEN, action="drop_after", times=1)
    with emu.client(journal=journal, max_retries=2) as c:
        job = c.generate("answer lost, job found")
    (created,) = emu.jobs
    assert job.id == created and emu.jobs_created == 1 and posts(emu) == 1
    (row,) = rows(journal)
    assert row["job_id"] == created and row["state"] == "submitted"


def test_sending_row_whose_job_does_not_exist_is_sent_once(emu, journal):
    emu.inject("POST", GEN, action="drop_before", times=1)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises((uni1.ConnectionError, uni1.SubmissionUncertainError)),
    ):
        c.generate("never arrived")
    assert emu.jobs_created == 0 and posts(emu) == 1
    (row,) = rows(journal)
    # timeout=1: the POST of a dead process is given 1 s (the floor) to land.
    with emu.client(journal=journal, timeout=1.0) as c:
        job = c.generate("never arrived")
        assert time.time() >= row["sent_at"] + 1.0
        again = c.generate("never arrived")  # occurrence 2: a new item
    assert emu.jobs_created == 2 and posts(emu) == 3
    assert again.id != job.id
    with emu.client(journal=journal) as c:
        assert c.generate("never arrived").id == job.id
    assert emu.jobs_created == 2 and posts(emu) == 3


def test_post_still_landing_when_the_process_died_is_adopted(emu, journal):
    # A process is killed while the server sits on its POST; the server goes
    # on and creates the job 1 s later (as a server does when its client goes
    # away). The next run must not take "not in the list yet" for "never
    # created": it waits for the POST to land, then adopts the job.
    emu.inject("POST", GEN, delay=1.0, times=1)
    script = (
        "import sys, scenario_uni1 as uni1\n"
        "with uni1.Client(journal=sys.argv[1], timeout=5) as c:\n"
        "    c.generate('slow to land')\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, journal],
        env=_child_env(emu),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while posts(emu) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert posts(emu) == 1 and emu.jobs_created == 0
    assert [r["state"] for r in rows(journal)] == ["sending"]
    with emu.client(journal=journal, timeout=5.0) as c:
        job = c.generate("slow to land")
    assert emu.jobs_created == 1 and posts(emu) == 1
    assert list(emu.jobs) == [job.id]
    assert rows(journal)[0]["job_id"] == job.id


def _post_from_elsewhere(emu, prompt: str) -> str:
    """Submit a job as another process would: raw HTTP, unknown to this process's clients."""
    import json
    import urllib.request

    auth = base64.b64encode(f"{emu.api_key}:{emu.api_secret}".encode()).decode()
    req = urllib.request.Request(
        emu.url + "/generate/custom/model_luma-uni-1-max",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["job"]["jobId"]


def test_hand_written_sending_row_is_adopted_not_resent(emu, journal):
    # A job submitted outside the journal, and a 'sending' row for it, as a
    # process killed right after its POST leaves them. (Made outside this
    # process: a job another client of this process holds is never adopted.)
    made_id = _post_from_elsewhere(emu, "killed after the post")
    with emu.client(journal=journal) as c:
        j = c._journal
        fp, request = journal_item("killed after the post")
        j._begin_sending(fp, 1, request)
    with emu.client(journal=journal) as c:
        job = c.generate("killed after the post")
    assert job.id == made_id and emu.jobs_created == 1


def test_core_adopting_another_items_job_is_caught(emu, journal):
    # Run 1 submits item #1. Run 2 re-attaches #1 (a GET: the core does not
    # count it as its own), then #2's POST gets a 502 without creating a job:
    # the core's own reconciliation finds #1's job (same input, recent) and
    # returns it. The journal sees that job is taken and sends #2 for real.
    with emu.client(journal=journal) as c:
        first = c.generate("same again")
    with emu.client(journal=journal) as c:
        assert c.generate("same again").id == first.id
        emu.inject("POST", GEN, status=502, times=1)
        second = c.generate("same again")
    assert second.id != first.id
    assert emu.jobs_created == 2
    assert sorted(r["job_id"] for r in rows(journal)) == sorted([first.id, second.id])


def test_server_error_keeps_the_row_for_a_later_run(emu, journal):
    emu.inject("POST", GEN, status=500, times=None)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises((uni1.ServerError, uni1.SubmissionUncertainError)),
    ):
        c.generate("5xx")
    assert [r["state"] for r in rows(journal)] == ["sending"]
    emu.clear_faults()
    with emu.client(journal=journal, timeout=1.0) as c:
        c.generate("5xx")
    assert emu.jobs_created == 1


# -- downloads ----------------------------------------------------------------------------------


def test_downloads_are_recorded_with_their_sha256(emu, journal, out):
    emu.outputs_per_job = 2
    with emu.client(journal=journal) as c:
        job = c.generate("two outputs")
        paths = job.download(out, timeout=20)
        assert len(paths) == 2
        recorded = download_rows(journal)
    assert {(r["asset_id"], r["path"]) for r in recorded} == {
        (a, os.path.abspath(p)) for a, p in zip(job.asset_ids, paths)
    }
    for r in recorded:
        assert r["job_id"] == job.id
        assert r["sha256"] == sha256_of(r["path"])
        assert r["size"] == os.path.getsize(r["path"])
    assert rows(journal)[0]["state"] == "done"


def test_deleted_file_is_fetched_again_present_one_is_skipped(emu, journal, out):
    emu.outputs_per_job = 2
    ids, paths = batch(emu, journal, out, ["keep one, lose one"])
    before = {p: sha256_of(p) for p in paths}
    os.remove(paths[1])
    fetched = cdn_gets(emu)
    ids2, paths2 = batch(emu, journal, out, ["keep one, lose one"])
    assert ids2 == ids and paths2 == paths
    assert cdn_gets(emu) == fetched + 1  # only the missing file
    assert {p: sha256_of(p) for p in paths2} == before
    assert posts(emu) == 1


def test_changed_file_is_not_overwritten_unless_asked(emu, journal, out):
    _, (path,) = batch(emu, journal, out, ["edited by hand"])
    with open(path, "ab") as f:
        f.write(b"extra")
    with emu.client(journal=journal) as c:
        job = c.generate("edited by hand")
        with pytest.raises(FileExistsError):
            job.download(out, timeout=20)
        with open(path, "rb") as f:
            assert f.read().endswith(b"extra")
        (again,) = job.download(out, overwrite=True, timeout=20)
    assert str(again) == path
    (rec,) = download_rows(journal)
    with open(path, "rb") as f:
        assert not f.read().endswith(b"extra")
    assert rec["sha256"] == sha256_of(path)


def test_file_written_but_not_recorded_is_kept(emu, journal, out):
    # A kill between the rename into place and the record: the file is complete
    # (written, fsynced, renamed), the journal just never heard of it.
    _, (path,) = batch(emu, journal, out, ["renamed, not recorded"])
    db = sqlite3.connect(journal)
    db.execute("DELETE FROM downloads")
    db.execute("UPDATE submissions SET state = 'submitted'")
    db.commit()
    db.close()
    digest = sha256_of(path)
    fetched = cdn_gets(emu)
    _, (path2,) = batch(emu, journal, out, ["renamed, not recorded"])
    assert path2 == path and cdn_gets(emu) == fetched
    (rec,) = download_rows(journal)
    assert rec["sha256"] == digest
    assert rows(journal)[0]["state"] == "done"


def test_download_hooks_directly(tmp_path, emu, journal):
    target = tmp_path / "asset_x.png"
    target.write_bytes(png_bytes())
    with emu.client(journal=journal) as c:
        j = c._journal
        assert j.download_skip("job_a", "asset_x", str(target)) is False  # not a journal job
        j.download_done("job_a", "asset_x", str(target))
        assert j.download_record("job_a", "asset_x", str(target)) == (
            sha256_of(target),
            target.stat().st_size,
        )
        assert j.download_skip("job_a", "asset_x", str(target)) is True
        target.write_bytes(png_bytes(65, 32))  # another picture, another size
        assert j.download_skip("job_a", "asset_x", str(target)) is False
        target.unlink()
        assert j.download_skip("job_a", "asset_x", str(target)) is False


# -- resume -------------------------------------------------------------------------------------


def test_resume_lists_unfinished_jobs(emu, journal, out):
    with emu.client(journal=journal) as c:
        done = c.generate("downloaded")
        done.download(out, timeout=20)
        pending = c.generate("not downloaded")
        emu.next_job_outcome("failure")
        failed = c.generate("fails")
        with pytest.raises(uni1.JobFailedError):
            failed.wait(timeout=20)
    # A 'sending' row whose job was created, and one whose job was not.
    emu.inject("POST", GEN, action="drop_after", times=1)
    emu.inject("GET", LISTING, status=500, times=None)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises(uni1.SubmissionUncertainError),
    ):
        c.generate("created, answer lost")
    emu.clear_faults()
    emu.inject("POST", GEN, action="drop_before", times=1)
    with (
        emu.client(journal=journal, max_retries=0) as c,
        pytest.raises((uni1.ConnectionError, uni1.SubmissionUncertainError)),
    ):
        c.generate("never created")
    assert emu.jobs_created == 4
    with emu.client(journal=journal, timeout=1.0) as c:
        unfinished = c.resume(timeout=20)
        adopted = [j for j in unfinished if j.id != pending.id]
        assert unfinished[0].id == pending.id
        assert len(adopted) == 1
        assert adopted[0].raw["metadata"]["input"]["prompt"] == "created, answer lost"
        # resume() does not submit anything
        assert emu.jobs_created == 4
        for job in unfinished:
            job.download(out, timeout=20)
        assert c.resume() == []
    states = {
        r["request_json"].split('"prompt":"')[1].split('"')[0]: r["state"] for r in rows(journal)
    }
    assert states == {
        "downloaded": "done",
        "not downloaded": "done",
        "fails": "failed",
        "created, answer lost": "done",
    }  # "never created" was dropped: the code that asked for it submits it on its next run
    assert emu.jobs_created == 4


def test_resume_without_a_journal_is_an_error(client):
    with pytest.raises(uni1.ConfigurationError, match="journal"):
        client.resume()


# -- the file -------------------------------------------------------------------------------------


@pytest.mark.uni1_emulator(api_key="KEY-7f3a9c1e55d04b2a", api_secret="SECRET-c0ffee9d8b7a6e5f")
def test_no_credential_is_ever_written(uni1_emulator, journal, out):
    emu = uni1_emulator
    secrets = [
        emu.api_key,
        emu.api_secret,
        base64.b64encode(f"{emu.api_key}:{emu.api_secret}".encode()).decode(),
    ]
    emu.inject("POST", GEN, action="drop_after", times=1)

    def files_bytes():
        data = b""
        for name in os.listdir(os.path.dirname(journal)):
            full = os.path.join(os.path.dirname(journal), name)
            if name.startswith("journal") and os.path.isfile(full):
                with open(full, "rb") as f:
                    data += f.read()
        return data

    with emu.client(journal=journal) as c:
        job = c.generate("no secrets here", image_refs=[png_bytes()])
        job.download(out, timeout=20)
        c.resume()
        live = files_bytes()  # the WAL, before any checkpoint
    closed = files_bytes()
    for data in (live, closed):
        assert b"no secrets here" in data  # the check reads what was written
        for secret in secrets:
            assert secret.encode() not in data
        assert b"Signature=" not in data and b"http" not in data  # no URLs either


def test_journal_file_is_private(journal):
    j = _journal.Journal(journal)
    try:
        assert os.stat(journal).st_mode & 0o077 == 0
    finally:
        j.close()


def test_journal_beside_its_files_makes_the_missing_directory(tmp_path):
    # Client(journal="renders/journal.sqlite") before renders/ exists.
    path = tmp_path / "renders" / "deeper" / "journal.sqlite"
    j = _journal.Journal(str(path))
    try:
        assert path.is_file()
        assert os.stat(path.parent).st_mode & 0o077 == 0
    finally:
        j.close()


def test_a_second_client_waits_for_the_first_ones_send_instead_of_paying_again(emu, journal):
    second_client_waits(emu, journal, rows)


def second_client_waits(emu, journal, rows) -> None:
    """(Also run on PostgreSQL by test_journal_pg.py, rows reading its ledger.)"""
    # Two clients on one journal (as two processes would be): the first one's
    # POST takes 3 s to be answered. The second one, asked for the same item
    # meanwhile, must neither take the row for a dead process's (its own
    # settle window, 1.5 s, would pass with no job in the list, and it would
    # send again) nor send it itself: it waits for the first one's job.
    emu.inject("POST", GEN, delay=3.0, times=1)
    first = emu.client(journal=journal, timeout=10)
    second = emu.client(journal=journal, timeout=1.0, settle_window=0.5)
    try:
        jobs = {}
        sender = threading.Thread(target=lambda: jobs.setdefault("first", first.generate("shared")))
        sender.start()
        deadline = time.monotonic() + 5
        while not rows(journal) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r["state"] for r in rows(journal)] == ["sending"]
        job = second.generate("shared")
        sender.join(20)
        assert job.id == jobs["first"].id
        assert emu.jobs_created == 1 and posts(emu) == 1
    finally:
        first.close()
        second.close()
    with emu.client(journal=journal) as c:  # and a third one re-attaches
        assert c.generate("shared").id == job.id
    assert emu.jobs_created == 1


def test_a_client_dropped_without_close_releases_the_journal(emu, journal):
    import gc

    c = emu.client(journal=journal)
    c.generate("dropped")
    del c
    gc.collect()
    with emu.client(journal=journal) as c:
        c.generate("dropped")
    assert emu.jobs_created == 1


def test_a_file_that_is_not_a_journal_is_refused(emu, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not SQLite\n" * 20)
    with pytest.raises(uni1.ConfigurationError, match="journal"):
        emu.client(journal=text)
    assert text.read_text().startswith("hello")
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('format', 'something else')")
    db.commit()
    db.close()
    with pytest.raises(uni1.ConfigurationError, match="not a scenario_uni1 journal"):
        emu.client(journal=other)
    app = tmp_path / "app.db"
    db = sqlite3.connect(app)
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(uni1.ConfigurationError, match="not a scenario_uni1 journal"):
        emu.client(journal=app)
    db = sqlite3.connect(app)
    try:  # untouched: no journal tables, journal mode unchanged
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert names == {"users"}
    finally:
        db.close()


def _live_copy(journal, dest_dir):
    """The database and its WAL as a crash would leave them (the journal still open)."""
    os.makedirs(dest_dir)
    copy = os.path.join(dest_dir, "journal.db")
    shutil.copyfile(journal, copy)
    shutil.copyfile(journal + "-wal", copy + "-wal")
    return copy


def _fill(j: _journal.Journal, prompt: str, claim: bool = True) -> None:
    request = {"prompt": prompt, "source": None, "image_refs": [], "aspect_ratio": None}
    fp = _journal.fingerprint(request)
    j._begin_sending(fp, 1, request)  # one commit
    if claim:
        assert j._claim(fp, 1, "job_" + hashlib.sha256(prompt.encode()).hexdigest()[:24])


def _state(path) -> list[tuple]:
    """(prompt, state, job id) of every row, after an integrity check."""
    j = _journal.Journal(path)
    try:
        assert j._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [(e.request["prompt"], e.state, e.job_id) for e in j.entries()]
    finally:
        j.close()


def test_a_torn_last_write_leaves_earlier_records_intact(tmp_path, journal):
    j = _journal.Journal(journal)
    try:
        _fill(j, "first")
        _fill(j, "second")
        _fill(j, "last", claim=False)
        before = _state_of(j)
        wal_before_last = os.path.getsize(journal + "-wal")
        _fill(j, "last")  # the last commit: the row gets its job id
        after = _state_of(j)
        wal_size = os.path.getsize(journal + "-wal")
        assert wal_size > wal_before_last > 0  # still in the WAL: nothing checkpointed
        assert before != after and after[-1][1] == "submitted"

        # Garbage after the last commit (a write that never completed).
        copy = _live_copy(journal, tmp_path / "garbage")
        with open(copy + "-wal", "ab") as f:
            f.write(os.urandom(5000))
        assert _state(copy) == after

        # The last transaction cut at many points inside its frames: it is
        # lost, never anything committed before it.
        step = max(1, (wal_size - wal_before_last) // 16)
        cuts = list(range(wal_before_last + 1, wal_size, step))
        assert len(cuts) >= 8
        for n, cut in enumerate(cuts):
            copy = _live_copy(journal, tmp_path / f"cut{n}")
            with open(copy + "-wal", "r+b") as f:
                f.truncate(cut)
            assert _state(copy) == before, f"cut at {cut}"

        # Garbage over the middle of the last transaction (a torn sector).
        copy = _live_copy(journal, tmp_path / "torn")
        with open(copy + "-wal", "r+b") as f:
            f.seek(wal_before_last + (wal_size - wal_before_last) // 2)
            f.write(b"\xff" * 512)
        assert _state(copy) == before
    finally:
        j.close()
    assert _state(journal) == after


def _state_of(j: _journal.Journal) -> list[tuple]:
    return [(e.request["prompt"], e.state, e.job_id) for e in j.entries()]


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_generate_journal_twice_submits_once(emu, monkeypatch, tmp_path, capsys, journal):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    args = ["--base-url", emu.url, "generate", "a cat", "-q", "-o", str(tmp_path / "o")]
    assert cli.main([*args, "--journal", journal]) == 0
    first = capsys.readouterr().out.strip()
    assert cli.main([*args, "--journal", journal]) == 0
    second = capsys.readouterr().out.strip()
    assert first == second and os.path.isfile(first)
    assert emu.jobs_created == 1 and posts(emu) == 1
    assert [r["state"] for r in rows(journal)] == ["done"]
    # Without the journal the same command is new work.
    assert cli.main(args) == 0
    assert emu.jobs_created == 2


def test_cli_journal_and_offline_do_not_mix(journal, capsys):
    assert cli.main(["generate", "--offline", "a cat", "--journal", journal]) == cli.EXIT_USAGE
    assert "--journal" in capsys.readouterr().err


# -- the crash test --------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import scenario_uni1 as uni1

    PROMPTS = [
        "a red fox", "a blue whale", "a red fox", "a castle", "a red fox",
        "a lighthouse", "a castle", "an owl", "a maple tree", "a harbour at dusk",
    ]

    journal, out = sys.argv[1], sys.argv[2]
    with uni1.Client(journal=journal, timeout=3, settle_window=1) as client:
        for i, prompt in enumerate(PROMPTS):
            job = client.generate(prompt)
            for path in job.download(out, timeout=30):
                print("file", i, path, flush=True)
    print("finished", flush=True)
    """
)


def _child_env(emu) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(emu.env())
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_sigkill_midway_then_rerun_finishes_with_exactly_one_job_per_item(emu, tmp_path):
    emu.job_duration = 0.3
    script = tmp_path / "batch.py"
    script.write_text(CHILD)
    journal, out = str(tmp_path / "batch.db"), str(tmp_path / "renders")
    cmd = [sys.executable, str(script), journal, out]
    env = _child_env(emu)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    files = 0
    try:
        for line in proc.stdout:
            if line.startswith("file"):
                files += 1
                if files == 4:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
    finally:
        watchdog.cancel()
        proc.stdout.close()
        proc.wait(10)
        proc.stderr.close()
    assert files == 4 and proc.returncode == -signal.SIGKILL
    assert emu.jobs_created < 10

    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "finished"
    printed = [
        line.split(" ", 2)[2] for line in done.stdout.splitlines() if line.startswith("file")
    ]
    assert len(printed) == 10 and len(set(printed)) == 10
    assert images_in(out) == sorted(os.path.basename(p) for p in printed)
    for path in printed:
        with PILImage.open(path) as im:
            im.load()
            assert im.format == "PNG"
    assert emu.jobs_created == 10
    assert [r["state"] for r in rows(journal)] == ["done"] * 10
    assert sorted(r["job_id"] for r in rows(journal)) == sorted(emu.jobs)
