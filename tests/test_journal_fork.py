"""A journaled client across fork(): the child gets its own database connection and
fresh locks; it never uses the parent's.

SQLite forbids carrying a connection across fork() (its locks belong to the
process that took them), and a lock of the journal held by one of the parent's
threads at the fork (the engine thread recording a download) would be held
forever in the child, where that thread does not exist. The PostgreSQL store's
case (a session, and the advisory lock that names the owner of claims) is in
test_journal_pg.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import pytest
from conftest import run_in_fork
from test_journal import rows

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def test_fork_waits_for_a_journal_transaction_and_the_child_uses_the_journal(emu, tmp_path):
    """A thread of the parent is in the middle of a journal transaction (the
    engine thread recording a download) when another thread forks. SQLite's
    table of the file's locks is per process and the child inherits it: forked
    then, the child's own connection would find the file locked by a
    connection that can never finish and wait forever (SIGALRM ends it here).
    fork() waits for the transaction instead."""
    journal = str(tmp_path / "journal.sqlite")
    with emu.client(journal=journal, timeout=10.0) as client:
        client.generate("before the fork").wait(timeout=30)
        in_transaction = threading.Event()

        def busy():
            with client._journal._lock, client._journal._store.transaction():
                in_transaction.set()
                time.sleep(0.5)

        t = threading.Thread(target=busy)
        t.start()
        in_transaction.wait(10)
        try:
            status, said = run_in_fork(
                lambda: client.generate("in the child").wait(timeout=30).id, alarm=20
            )
        finally:
            t.join()
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, said or f"status {status}"
        child_job = said
        assert emu.job(child_job)["status"] == "success"
        # The parent goes on with the same journal.
        parent_job = client.generate("after the fork").wait(timeout=30).id
    assert emu.jobs_created == 3
    recorded = {r["job_id"] for r in rows(journal)}
    assert child_job in recorded and parent_job in recorded
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_parent_and_child_write_the_journal_at_once_each_on_its_own_connection(emu, tmp_path):
    journal = str(tmp_path / "journal.sqlite")
    with emu.client(journal=journal, timeout=10.0) as client:
        # Warm: every module the batch needs is imported before the fork (a
        # module a thread of the parent is importing at the fork stays locked
        # in the child: CPython's rule, not the journal's).
        assert [g.error for g in client.generate_many(["warm"])] == [None]
        parents = id(client._journal._store.db)

        def child():
            own = client._journal._store.db
            if id(own) == parents:
                return "the parent's connection"
            gens = list(client.generate_many([f"child {i}" for i in range(8)], concurrency=4))
            return sum(g.error is None for g in gens)

        # The parent runs its own batch on the same file while the child runs.
        done = []
        t = threading.Thread(
            target=lambda: done.extend(
                client.generate_many([f"parent {i}" for i in range(8)], concurrency=4)
            )
        )
        t.start()
        status, said = run_in_fork(child, alarm=20)
        t.join(60)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, said or f"status {status}"
        assert said == "8", said
        assert [g.error for g in done] == [None] * 8
        assert client._journal._store.db is not None and id(client._journal._store.db) == parents
        # A re-run of both batches in the parent pays for nothing.
        again = list(client.generate_many([f"child {i}" for i in range(8)], concurrency=4))
        assert [g.error for g in again] == [None] * 8
    assert emu.jobs_created == 17
    assert len(rows(journal)) == 17
    with sqlite3.connect(journal) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
