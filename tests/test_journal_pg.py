"""The journal on PostgreSQL (Client(journal="postgresql://...")), against a real
server that the tests start (tests/_postgres.py): the same rules as the SQLite
journal, one ledger shared by every client, claims whose owner is a live
session are waited for, claims of a dead session are taken over, and neither
the ledger nor anything shown carries a secret.
"""

from __future__ import annotations

import hashlib
import os
import time

import _postgres
import pytest
from conftest import journal_item, run_in_fork
from test_journal import second_client_waits

import scenario_uni1 as uni1
from scenario_uni1 import _core, _journal
from scenario_uni1._journal._postgres import redact

# The cluster layer of scripts/dev.sh runs these (PostgreSQL, psycopg: the cluster extra).
pytestmark = pytest.mark.cluster
postgres_server = _postgres.postgres_server
pg_journal = _postgres.pg_journal


def _psycopg():
    # Imported here, not at collection: the other layers (the sanitized build
    # among them) collect this module and leave its tests out.
    import psycopg

    return psycopg


GEN = r"^/v1/generate/"


def ledger(url: str, table: str) -> list[dict]:
    with _psycopg().connect(url) as db:
        cur = db.execute(f"SELECT * FROM scenario_uni1.{table}")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def sha256_of(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_generate_twice_pays_once_and_records_every_file(emu, pg_journal, tmp_path):
    out = tmp_path / "out"
    with emu.client(journal=pg_journal) as c:
        job = c.generate("a fox on PostgreSQL")
        paths = job.download(out, timeout=20)
    with emu.client(journal=pg_journal) as c:  # another client: the same ledger
        again = c.generate("a fox on PostgreSQL")
        assert again.id == job.id
    assert emu.jobs_created == 1 and emu.request_count("POST", GEN) == 1
    (row,) = ledger(pg_journal, "submissions")
    assert row["job_id"] == job.id and row["state"] == "done" and row["owner"] is None
    files = ledger(pg_journal, "downloads")
    assert sorted(f["path"] for f in files) == sorted(os.path.abspath(p) for p in paths)
    for f in files:
        assert (
            f["sha256"]
            == sha256_of(f["path"])
            == hashlib.sha256(emu.asset_bytes(f["asset_id"])).hexdigest()
        )


def test_generate_many_on_the_engine_then_a_rerun_sends_nothing(emu, pg_journal, tmp_path):
    prompts = [f"tile {i}" for i in range(6)] + ["tile 0"]
    out = tmp_path / "out"
    with emu.client(journal=pg_journal) as c:
        first = sorted(g.job.id for g in c.generate_many(prompts, concurrency=4, download=out))
    assert emu.jobs_created == 7
    with emu.client(journal=pg_journal) as c:
        second = sorted(g.job.id for g in c.generate_many(prompts, concurrency=4, download=out))
    assert second == first and emu.jobs_created == 7
    assert emu.request_count("POST", GEN) == 7
    assert sorted(r["state"] for r in ledger(pg_journal, "submissions")) == ["done"] * 7


def test_a_live_sessions_claim_is_waited_for(emu, pg_journal):
    second_client_waits(emu, pg_journal, lambda url: ledger(url, "submissions"))


def test_a_dead_sessions_claim_is_taken_over(emu, pg_journal):
    fp, request = journal_item("orphaned")
    dead = _journal.Journal(pg_journal)
    dead._begin_sending(fp, 1, request)  # a worker about to POST
    with emu.client(journal=pg_journal, timeout=1.0, settle_window=0.2) as c:
        deadline = _core.Deadline(1)
        assert c._journal.claim(fp, 1, request, deadline, wait=False) is False  # alive
        # The worker's machine goes away: the server ends its session.
        with _psycopg().connect(pg_journal, autocommit=True) as admin:
            pid = dead._store.db.info.backend_pid
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        job = c.generate("orphaned")  # taken over, reconciled (no job), sent once
    assert emu.jobs_created == 1
    (row,) = ledger(pg_journal, "submissions")
    assert row["job_id"] == job.id and row["owner"] is None


def test_the_password_is_never_shown(emu, postgres_server):
    secret = "pw-s3cret-Xy"
    url = postgres_server.create_database().replace("uni1@", f"uni1:{secret}@")
    with emu.client(journal=url) as c:  # trust authentication: any password is accepted
        assert c.journal is not None and secret not in c.journal
        assert c.journal.startswith("postgresql://uni1@127.0.0.1:")
        assert secret not in repr(c) and secret not in repr(c._journal)
    bad = f"postgresql://uni1:{secret}@127.0.0.1:1/nowhere?password={secret}"
    with pytest.raises(uni1.ConfigurationError, match="cannot connect") as info:
        emu.client(journal=bad)
    assert secret not in str(info.value)
    assert secret not in redact(bad)


def test_nothing_secret_is_in_the_ledger(emu, pg_journal, tmp_path):
    with emu.client(journal=pg_journal) as c:
        c.generate("no secrets here").download(tmp_path, timeout=20)
    dumped = repr(ledger(pg_journal, "submissions") + ledger(pg_journal, "downloads"))
    assert "no secrets here" in dumped
    for secret in (emu.api_key, emu.api_secret):
        assert secret not in dumped
    assert "http" not in dumped


def test_a_schema_that_is_not_a_journal_is_refused(emu, pg_journal):
    with _psycopg().connect(pg_journal, autocommit=True) as db:
        db.execute("CREATE SCHEMA scenario_uni1")
        db.execute("CREATE TABLE scenario_uni1.meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO scenario_uni1.meta VALUES ('format', 'something else')")
    with pytest.raises(uni1.ConfigurationError, match="not a scenario_uni1 journal"):
        emu.client(journal=pg_journal)


def test_a_failed_item_set_aside_is_sent_anew(emu, pg_journal):
    # Journal.retry_failed (the batch command's --retry-failed) in the SQL both stores speak.
    emu.next_job_outcome("failure", error="boom")
    with emu.client(journal=pg_journal) as c:
        failed = c.generate("try again")
        with pytest.raises(uni1.JobFailedError):
            failed.wait(timeout=20)
        c.resume()  # records the failure
    (row,) = ledger(pg_journal, "submissions")
    assert row["state"] == "failed"
    with emu.client(journal=pg_journal) as c:
        assert c._journal.retry_failed(row["fingerprint"], 1)
        assert not c._journal.retry_failed(row["fingerprint"], 1)  # nothing failed there now
        fresh = c.generate("try again")
    assert fresh.id != failed.id and emu.jobs_created == 2
    occurrences = sorted(r["occurrence"] for r in ledger(pg_journal, "submissions"))
    assert occurrences == [-1, 1]


def test_a_lost_database_is_a_clear_error(emu, pg_journal):
    with emu.client(journal=pg_journal) as c:
        with _psycopg().connect(pg_journal, autocommit=True) as admin:
            pid = c._journal._store.db.info.backend_pid
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(uni1.Uni1Error, match="journal .* is unreachable"):
            c.generate("nowhere to record it")
    assert emu.jobs_created == 0  # nothing sent without its record


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_childs_claims_are_its_own_and_die_with_it(emu, pg_journal):
    """A child forked from a process with a PostgreSQL journal opens its own
    session: the parent's socket is not shared (their messages would mix), and
    a claim the child makes is named by the child's advisory lock, so it dies
    with the child instead of living on with the parent's session."""
    fp, request = journal_item("claimed in a child")
    journal = _journal.Journal(pg_journal)
    try:
        parent_owner = journal._store.owner

        def child():  # claims the row (about to POST), then dies without a goodbye
            journal._begin_sending(fp, 1, request)
            return journal._store.owner

        status, child_owner = run_in_fork(child, alarm=20)  # the server ends its session
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, child_owner
        assert child_owner.startswith("pg/") and child_owner != parent_owner
        (row,) = ledger(pg_journal, "submissions")
        assert row["owner"] == child_owner
        end = time.monotonic() + 10
        while journal._store.alive(child_owner) and time.monotonic() < end:
            time.sleep(0.1)
        assert not journal._store.alive(child_owner)
        # The parent's session is untouched and still its own.
        assert journal._store.owner == parent_owner
        assert journal.entry(fp, 1).owner == child_owner
    finally:
        journal.close()
    with emu.client(journal=pg_journal, timeout=1.0, settle_window=0.2) as c:
        job = c.generate("claimed in a child")  # taken over, reconciled (no job), sent once
    assert emu.jobs_created == 1
    (row,) = ledger(pg_journal, "submissions")
    assert row["job_id"] == job.id
