"""The journal's rules, written once for every store (see the package's docstring).

A store (_sqlite.SQLiteStore, _postgres.PostgresStore) runs statements,
transactions that lock what they read, and says whether the owner of a claim
is alive; everything else, every decision about a work item, is here.
"""

import heapq
import os
import threading
import time
import weakref

from .. import _core
from ._records import (
    DONE,
    ENTRY_COLUMNS,
    FAILED,
    SENDING,
    SUBMITTED,
    Entry,
    _created_nothing,
    _debug,
    _has_uploads,
    canonical_json,
    file_sha256,
    fingerprint,
    input_key,
)

# How many times one work item may find its job taken by another item of the
# journal (see Journal._send) before giving up.
_MAX_CLAIMS = 3

# A 'sending' row left by a process that died while its POST was in flight is
# declared "never created" only once the server has had the time to finish
# that POST (a server goes on with a request whose client went away): the
# client's request timeout, the longest the dead process would have waited for
# the answer, within these bounds, plus the client's settle window (a job may
# appear that long after its POST failed). Until then the job list is polled.
_SETTLE_MIN = 1.0
_SETTLE_MAX = 120.0
_SETTLE_POLL = 1.0

# How often a row that a live process is sending is looked at again.
_CLAIM_POLL = 0.2

# Job ids recorded by other processes are read back from rows updated since
# the last look, minus this margin for the clocks of other machines.
_CLOCK_MARGIN = 300.0


class Counts:
    """The occurrences given out, per fingerprint, by a client or a task."""

    __slots__ = ("free", "given")

    def __init__(self) -> None:
        self.given: dict[str, int] = {}
        # Occurrences given out whose row was deleted (the request created
        # nothing): the next identical request takes the lowest of them
        # before a new one. A batch sending an item again after a refusal
        # (generate_many after the ceiling's 429) thereby keeps the numbering
        # a re-run of the same batch gives its items.
        self.free: dict[str, list[int]] = {}


def open_store(spec: str):
    """The store for Client(journal=spec): a PostgreSQL URL, else an SQLite file."""
    from ._postgres import PostgresStore, is_url

    if is_url(spec):
        return PostgresStore(spec)
    from ._sqlite import SQLiteStore

    return SQLiteStore(spec)


# The open journals of this process, and fork(). Every statement and
# transaction runs under a journal's _lock, so fork() takes each _lock first:
# no transaction is open when the process is copied. SQLite keeps the locks
# of a file in a table of the process, which the child inherits; a child
# forked in the middle of a parent's transaction would find the file locked
# by a connection of its own that can never finish, and wait forever. The
# child gets fresh locks (a thread of the parent, the engine recording a
# download, may have held _claim_lock at the fork, and that thread does not
# exist in the child); its store opens its own connection at first use.
_journals: "weakref.WeakSet[Journal]" = weakref.WeakSet()
_held_across_fork: list = []


def _before_fork() -> None:
    _held_across_fork[:] = list(_journals)
    for journal in _held_across_fork:
        journal._lock.acquire()


def _after_fork_in_parent() -> None:
    for journal in _held_across_fork:
        journal._lock.release()
    _held_across_fork.clear()


def _after_fork_in_child() -> None:
    _held_across_fork.clear()
    for journal in list(_journals):
        journal._lock = threading.Lock()
        journal._claim_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class Journal:
    """The journal of one Client. Thread-safe: one connection behind a lock.

    download_skip and download_done are called by scenario_uni1.Job.download()
    around the binding's download (see _job.py).
    """

    def __init__(self, spec) -> None:
        self._lock = threading.Lock()
        # Held while a 'sending' row is matched to a job on the server, so two
        # threads never adopt the same job for two rows (other processes are
        # kept apart by the UNIQUE job_id: see _claim).
        self._claim_lock = threading.Lock()
        # Occurrences are counted per client, or per task where one began on
        # the calling thread (begin_task).
        self._counts = Counts()
        self._local = threading.local()
        # The jobs this journal handed out and that are not finished yet: their
        # asset_ids tell the download hooks when a job's files are all there.
        self._jobs: dict = {}
        # Assets Job.download asked about, per job (for jobs not in _jobs).
        self._assets_seen: dict[str, set] = {}
        # Seconds to wait for an interrupted POST to land (None: from the
        # client's timeout; see _SETTLE_MIN).
        self.settle_time: float | None = None
        spec = os.fsdecode(spec) if isinstance(spec, bytes) else str(spec)
        self._store = open_store(spec)
        self.path = self._store.name
        try:
            # Every job id of the journal, kept in memory: each submission
            # hands them all to the core to exclude, and a batch of N items
            # must not read N rows N times. Rows with a job are never deleted;
            # those other processes record are read back as they come (job_ids).
            self._seen_until = time.time()
            self._job_ids = {
                r[0]
                for r in self._store.query(
                    "SELECT job_id FROM submissions WHERE job_id IS NOT NULL"
                )
            }
        except BaseException:
            self._store.close()
            self._store = None
            raise
        _journals.add(self)

    @property
    def _db(self):
        """The SQLite connection (None once closed, or for another store)."""
        return getattr(self._store, "db", None) if self._store is not None else None

    def close(self) -> None:
        with self._lock:
            store, self._store = self._store, None
            self._jobs.clear()  # they refer to the client: no cycle left behind
            if store is None:
                return
            try:
                # Rows this journal was sending and that have no job: the next
                # process reconciles them without waiting for this one.
                store.execute(
                    "UPDATE submissions SET owner = NULL WHERE owner = ? AND job_id IS NULL",
                    (store.owner,),
                )
            except Exception as exc:  # noqa: BLE001 - a dead owner is taken over anyway
                _debug("journal: cannot release its claims: %s", exc)
            finally:
                store.close()

    @property
    def closed(self) -> bool:
        return self._store is None

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<scenario_uni1 journal {self.path!r}{state}>"

    # -- database helpers ------------------------------------------------------

    def _conn(self):
        store = self._store
        if store is None:
            raise _core.ConfigurationError("the journal is closed (its client was closed)")
        return store

    def _write(self, sql: str, params=()) -> int:
        """One statement, committed (durably) before returning; the row count."""
        with self._lock:
            return self._conn().execute(sql, params)

    def _read(self, sql: str, params=()) -> list:
        with self._lock:
            return self._conn().query(sql, params)

    # -- submissions -----------------------------------------------------------

    def begin_task(self) -> None:
        """Count occurrences from 1 again on the calling thread: a task starts.

        A worker process's client (shared_client) serves task after task: a
        task retried there, or a pipeline run again on the same workers, must
        map its calls to the rows of its first attempt, not to the next
        occurrences of the client. Within the task, the n-th identical
        request is occurrence n, as in a script.
        """
        self._local.counts = Counts()

    def counts(self) -> "Counts":
        """Where the calling thread's occurrences are counted."""
        counts = getattr(self._local, "counts", None)
        return self._counts if counts is None else counts

    def next_occurrence(self, fp: str, counts: "Counts | None" = None) -> int:
        counts = self.counts() if counts is None else counts
        with self._lock:
            free = counts.free.get(fp)
            if free:
                return heapq.heappop(free)
            n = counts.given.get(fp, 0) + 1
            counts.given[fp] = n
            return n

    def entry(self, fp: str, occurrence: int) -> "Entry | None":
        rows = self._read(
            f"SELECT {ENTRY_COLUMNS} FROM submissions WHERE fingerprint = ? AND occurrence = ?",
            (fp, occurrence),
        )
        return Entry(*rows[0]) if rows else None

    def entries(self, states=None) -> "list[Entry]":
        """Every row (or those in `states`), oldest first."""
        sql = f"SELECT {ENTRY_COLUMNS} FROM submissions"
        params: tuple = ()
        if states is not None:
            states = tuple(states)
            sql += " WHERE state IN ({})".format(", ".join("?" * len(states)))
            params = states
        sql += " ORDER BY created, fingerprint, occurrence"
        return [Entry(*row) for row in self._read(sql, params)]

    def job_ids(self) -> list:
        """Every job of the journal, those other processes recorded since the last call included."""
        with self._lock:
            store = self._conn()
            now = time.time()
            self._job_ids.update(
                r[0]
                for r in store.query(
                    "SELECT job_id FROM submissions WHERE job_id IS NOT NULL AND updated >= ?",
                    (self._seen_until - _CLOCK_MARGIN,),
                )
            )
            self._seen_until = now
            return list(self._job_ids)

    # -- claims ------------------------------------------------------------------

    def claim(self, fp: str, occurrence: int, request, deadline, *, wait: bool = True):
        """Make this journal the one that sends the item; what to do with it.

        The rules, the same for every store and every caller (generate,
        submit, generate_many, resume), decided in one transaction that locks
        the row:
        - no row: a row 'sending' (the request as described, its inputs as
          content hashes) is inserted, owned by this journal: returns None,
          the caller uploads and sends;
        - a row with a job: returns it; the caller attaches to that job (the
          job the item's first attempt paid for, whichever process made it);
        - a row without a job, owned by nobody (released after an uncertain
          send), by this journal, or by a process that is gone: this journal
          takes it over and returns it; the caller reconciles it (the dead
          POST may have created a job) before it sends anything;
        - a row without a job owned by a live process, which is sending it
          now: waited for (polled), until it gets its job (attach) or is
          released (take over); never sent a second time. The wait ends at
          the caller's deadline (TimeoutError). With wait=False, returns
          False at once instead.
        With request None, a missing row is not inserted (returns None).
        """
        waited = False
        while True:
            with self._lock:
                store = self._conn()
                try:
                    with store.transaction():
                        found = self._claim_row(store, fp, occurrence, request)
                except store.integrity_error:
                    continue  # another process inserted the row meanwhile: look again
            if found is not False:
                return found
            if not wait:
                return False
            if not waited:
                _debug("journal: item %s#%d is being sent by another process", fp[:12], occurrence)
                waited = True
            remaining = deadline.remaining()  # TimeoutError once passed
            time.sleep(_CLAIM_POLL if remaining is None else min(_CLAIM_POLL, remaining))

    def _claim_row(self, store, fp: str, occurrence: int, request: dict):
        rows = store.query(
            f"SELECT {ENTRY_COLUMNS} FROM submissions"
            f" WHERE fingerprint = ? AND occurrence = ?{store.for_update}",
            (fp, occurrence),
        )
        now = time.time()
        if not rows:
            if request is None:
                return None
            store.execute(
                "INSERT INTO submissions (fingerprint, occurrence, request_json, state, sent_at,"
                " job_id, created, updated, owner) VALUES (?, ?, ?, 'sending', ?, NULL, ?, ?, ?)",
                (
                    fp,
                    occurrence,
                    canonical_json(request).decode("utf-8"),
                    now,
                    now,
                    now,
                    store.owner,
                ),
            )
            return None
        entry = Entry(*rows[0])
        if entry.job_id:
            return entry
        if entry.owner not in (None, store.owner) and store.alive(entry.owner):
            return False
        store.execute(
            "UPDATE submissions SET owner = ?, updated = ? WHERE fingerprint = ? AND occurrence = ?",
            (store.owner, now, fp, occurrence),
        )
        entry.owner = store.owner
        return entry

    def _release(self, fp: str, occurrence: int) -> None:
        """Let go of a row left without a job (an uncertain send): the next
        attempt, in any process, reconciles it at once instead of waiting."""
        with self._lock:
            store = self._conn()
            store.execute(
                "UPDATE submissions SET owner = NULL WHERE fingerprint = ? AND occurrence = ?"
                " AND owner = ? AND job_id IS NULL",
                (fp, occurrence, store.owner),
            )

    def _begin_sending(self, fp: str, occurrence: int, request: dict) -> float:
        """Record (and commit) that this request is about to be sent; its time."""
        now = time.time()
        with self._lock:
            store = self._conn()
            store.execute(
                "INSERT INTO submissions (fingerprint, occurrence, request_json, state, sent_at,"
                " job_id, created, updated, owner) VALUES (?, ?, ?, 'sending', ?, NULL, ?, ?, ?)"
                " ON CONFLICT (fingerprint, occurrence) DO UPDATE SET"
                " request_json = excluded.request_json, state = 'sending',"
                " sent_at = excluded.sent_at, updated = excluded.updated, owner = excluded.owner"
                " WHERE submissions.job_id IS NULL",
                (
                    fp,
                    occurrence,
                    canonical_json(request).decode("utf-8"),
                    now,
                    now,
                    now,
                    store.owner,
                ),
            )
        return now

    def _ready(self, fp: str, occurrence: int, request: dict) -> None:
        """The request as it is about to be sent (asset ids in place of the
        uploaded inputs' hashes) and the time, committed (engine thread, just
        before the POST). Nothing for a row that already has its job."""
        now = time.time()
        self._write(
            "UPDATE submissions SET request_json = ?, sent_at = ?, updated = ?"
            " WHERE fingerprint = ? AND occurrence = ? AND job_id IS NULL",
            (canonical_json(request).decode("utf-8"), now, now, fp, occurrence),
        )

    def _claim(self, fp: str, occurrence: int, job_id: str) -> bool:
        """Give the row its job; False when another row of the journal has that
        job, or this row already has another (recorded by another process)."""
        with self._lock:
            store = self._conn()
            try:
                changed = store.execute(
                    "UPDATE submissions SET job_id = ?, owner = NULL, updated = ?,"
                    " state = CASE WHEN job_id IS NULL THEN 'submitted' ELSE state END"
                    " WHERE fingerprint = ? AND occurrence = ? AND (job_id IS NULL OR job_id = ?)",
                    (job_id, time.time(), fp, occurrence, job_id),
                )
            except store.integrity_error:
                return False
            if not changed:
                return False
            self._job_ids.add(job_id)
        return True

    def _forget(self, fp: str, occurrence: int, counts: "Counts | None" = None) -> None:
        """Delete a row that has no job and that no other live process is
        sending; its occurrence is free again where it was given out (counts:
        the item's, when this runs on another thread than the one that
        counted it)."""
        counts = self.counts() if counts is None else counts
        with self._lock:
            store = self._conn()
            deleted = store.execute(
                "DELETE FROM submissions WHERE fingerprint = ? AND occurrence = ?"
                " AND job_id IS NULL AND (owner IS NULL OR owner = ?)",
                (fp, occurrence, store.owner),
            )
            if deleted and occurrence <= counts.given.get(fp, 0):
                heapq.heappush(counts.free.setdefault(fp, []), occurrence)

    def set_state(self, job_id: str, state: str) -> None:
        self._write(
            "UPDATE submissions SET state = ?, updated = ? WHERE job_id = ? AND state != ?",
            (state, time.time(), job_id, state),
        )

    def retry_failed(self, fp: str, occurrence: int) -> bool:
        """Free a failed item's place for a new submission; False if it has not failed.

        The row keeps its job (no reconciliation adopts that job for another
        item) under a negative occurrence, which no call is ever given.
        """
        return bool(
            self._write(
                # CASE and COALESCE: the same SQL on SQLite and PostgreSQL.
                "UPDATE submissions SET updated = ?, occurrence = (SELECT CASE WHEN"
                " COALESCE(MIN(occurrence), 0) < 0 THEN MIN(occurrence) ELSE 0 END - 1"
                " FROM submissions WHERE fingerprint = ?)"
                " WHERE fingerprint = ? AND occurrence = ? AND state = 'failed'",
                (time.time(), fp, fp, occurrence),
            )
        )

    def mark_done(self, job_id: str) -> None:
        self.set_state(job_id, DONE)
        with self._lock:
            self._jobs.pop(job_id, None)

    def _register(self, job):
        with self._lock:
            self._jobs[job.id] = job
        return job

    def _settle_for(self, client) -> float:
        if self.settle_time is not None:
            return float(self.settle_time)
        timeout = min(max(float(client.timeout), _SETTLE_MIN), _SETTLE_MAX)
        return timeout + client._settle_window

    def owns(self, job_id: str) -> bool:
        return bool(self._read("SELECT 1 FROM submissions WHERE job_id = ?", (job_id,)))

    # -- the engine path (Client.submit, generate_many) ----------------------------

    def start_generation(
        self,
        client,
        prompt,
        src,
        refs,
        aspect_ratio,
        output_format,
        web_search,
        *,
        download,
        overwrite,
        timeout,
    ) -> "_core.Generation":
        """Client.submit() with the journal: the item's pipeline, started on the engine.

        src and refs are what Client._prepare returned (asset ids or uploads;
        the Uploads are closed once the generation ends). Returns at once
        without network I/O to the API: claims the item in the journal (a new
        item's 'sending' row is committed; an item another live process is
        sending is waited for, see claim). See _journal_engine.
        """
        from .._journal_engine import start_generation

        return start_generation(
            self,
            client,
            prompt,
            src,
            refs,
            aspect_ratio,
            output_format,
            web_search,
            download=download,
            overwrite=overwrite,
            timeout=timeout,
        )

    # -- the generate path ---------------------------------------------------------

    def submit(self, client, prompt, src, refs, aspect_ratio, output_format, web_search, deadline):
        """Client.generate() with the journal: re-attach, reconcile, or record then send.

        src and refs are what Client._prepare returned (asset ids or uploads).
        """
        described = {
            "prompt": prompt,
            "source": input_key(src),
            "image_refs": [input_key(r) for r in refs],
            "aspect_ratio": aspect_ratio,
            "output_format": output_format,
            "web_search": bool(web_search),
        }
        fp = fingerprint({**described, "project_id": client.project_id})
        occurrence = self.next_occurrence(fp)
        entry = self.claim(fp, occurrence, described, deadline)
        if entry is not None and entry.job_id:
            _debug("journal: item %s#%d is %s; re-attaching", fp[:12], occurrence, entry.job_id)
            job = client.job(entry.job_id)
            if entry.state in (SENDING, SUBMITTED):
                self._register(job)
            return job
        try:
            if entry is not None and not _has_uploads(entry.request):
                # The process died between sending and recording the answer
                # (or the send failed in a way that proves nothing): ask the server.
                job = self._reconcile(client, entry, deadline, settle=True)
                if job is not None:
                    return job
                request = entry.request  # the same asset ids: nothing to upload again
            else:
                source_id, ref_ids = client._upload_all(src, refs, deadline)
                request = {
                    "prompt": prompt,
                    "source": source_id,
                    "image_refs": list(ref_ids),
                    "aspect_ratio": aspect_ratio,
                    "output_format": output_format,
                    "web_search": bool(web_search),
                }
        except BaseException:
            # Nothing of this attempt was sent: a row it made goes, one it
            # took over is let go (its earlier POST may still be found).
            if entry is None:
                self._forget(fp, occurrence)
            else:
                self._release(fp, occurrence)
            raise
        return self._send(client, fp, occurrence, request, deadline)

    def _reconcile(self, client, entry: Entry, deadline, *, settle: bool):
        """The job an interrupted send of this row created (now recorded), or None.

        With settle, "none" is only concluded once the POST, if it reached the
        server, has had the time to create its job (see _SETTLE_MIN).
        """
        if _has_uploads(entry.request):
            return None  # recorded before its uploads (start_generation): nothing to match
        settle_until = entry.sent_at + (self._settle_for(client) if settle else 0.0)
        claims = 0
        with self._claim_lock:
            while True:
                job = client._find_job(
                    **entry.request,
                    sent_at=entry.sent_at,
                    exclude=self.job_ids(),
                    timeout=deadline,
                )
                if job is not None:
                    if self._claim(entry.fingerprint, entry.occurrence, job.id):
                        _debug(
                            "journal: item %s#%d adopted %s",
                            entry.fingerprint[:12],
                            entry.occurrence,
                            job.id,
                        )
                        return self._register(job)
                    claims += 1
                    if claims >= _MAX_CLAIMS:
                        raise _core.Uni1Error(
                            "the journal could not match an interrupted submission to a job "
                            "of its own; try again"
                        )
                    continue
                wait = settle_until - time.time()
                if wait <= 0:
                    _debug(
                        "journal: item %s#%d was never created",
                        entry.fingerprint[:12],
                        entry.occurrence,
                    )
                    return None
                _debug(
                    "journal: item %s#%d not found yet; its POST may still be landing",
                    entry.fingerprint[:12],
                    entry.occurrence,
                )
                remaining = deadline.remaining()
                time.sleep(min(wait, _SETTLE_POLL, wait if remaining is None else remaining))

    def _send(self, client, fp: str, occurrence: int, request: dict, deadline):
        for _ in range(_MAX_CLAIMS):
            self._begin_sending(fp, occurrence, request)  # committed before the POST
            try:
                # The core's own reconciliation (after an uncertain attempt)
                # must not adopt a job that this journal gave to another item,
                # possibly in an earlier process: the claims it shares
                # process-wide do not know those.
                job = client._submit(**request, timeout=deadline, exclude=self.job_ids())
            except BaseException as exc:
                if _created_nothing(exc):
                    self._forget(fp, occurrence)
                else:
                    self._release(fp, occurrence)
                raise
            if self._claim(fp, occurrence, job.id):
                _debug("journal: item %s#%d submitted as %s", fp[:12], occurrence, job.id)
                return self._register(job)
            entry = self.entry(fp, occurrence)
            if entry is not None and entry.job_id:
                # Another process recorded a job for this very item, which
                # only happens after this journal's claim on the row was
                # taken for dead (this process lost its database connection):
                # the item is that job; the one just created is paid for and
                # not recorded.
                _debug(
                    "journal: item %s#%d is %s; %s left", fp[:12], occurrence, entry.job_id, job.id
                )
                return self._register(client.job(entry.job_id, timeout=deadline))
            # The job the core returned belongs to another item of this journal.
            # The core was given the journal's jobs to leave alone, so only a
            # row recorded by another thread meanwhile can do that. Reconcile
            # again, knowing the journal's jobs: the job this POST created, if
            # any, is found; if none, send again. The POST was answered: no
            # need to wait for it to land.
            _debug("journal: %s already belongs to another item; reconciling", job.id)
            if entry is None:  # pragma: no cover - rows are only deleted by this thread
                continue
            found = self._reconcile(client, entry, deadline, settle=False)
            if found is not None:
                return found
        raise _core.Uni1Error(
            "the journal could not record this submission: every job the server returned "
            "already belongs to another item"
        )

    # -- resume ------------------------------------------------------------------

    def resume(self, client, deadline) -> list:
        """The unfinished jobs, re-attached; 'sending' rows reconciled first."""
        jobs = []
        for entry in self.entries((SENDING, SUBMITTED)):
            if entry.job_id is None:
                # A row another live process is sending is left to it.
                taken = self.claim(entry.fingerprint, entry.occurrence, None, deadline, wait=False)
                if not taken:
                    continue
                entry = taken
            if entry.job_id is None:
                job = self._reconcile(client, entry, deadline, settle=True)
                if job is None:
                    self._forget(entry.fingerprint, entry.occurrence)
                    continue
            else:
                job = client.job(entry.job_id)
            if not self._finished(job):
                jobs.append(self._register(job))
        return jobs

    def _finished(self, job) -> bool:
        """Record the final state of a finished job; whether it is finished."""
        if not job.done:
            return False
        if job.status in ("success", "succeeded"):
            ids = set(job.asset_ids)
            if ids and not ids <= self.downloaded_assets(job.id):
                return False
            self.mark_done(job.id)
        else:
            self.set_state(job.id, FAILED)
            with self._lock:
                self._jobs.pop(job.id, None)
        return True

    # -- downloads -------------------------------------------------------------------

    def downloaded_assets(self, job_id: str) -> set:
        return {
            r[0] for r in self._read("SELECT asset_id FROM downloads WHERE job_id = ?", (job_id,))
        }

    def download_record(self, job_id: str, asset_id: str, path: str):
        """(sha256, size) of a recorded download, or None."""
        rows = self._read(
            "SELECT sha256, size FROM downloads WHERE job_id = ? AND asset_id = ? AND path = ?",
            (job_id, asset_id, os.path.abspath(path)),
        )
        return rows[0] if rows else None

    def _record_download(self, job_id: str, asset_id: str, path: str, digest: str, size: int):
        self._write(
            "INSERT INTO downloads (job_id, asset_id, path, sha256, size, finished)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, asset_id, path) DO UPDATE SET"
            " sha256 = excluded.sha256, size = excluded.size, finished = excluded.finished",
            (job_id, asset_id, path, digest, size, time.time()),
        )

    def _check_complete(self, job_id: str, *, from_download: bool) -> None:
        """Mark the item done once every asset of its job has a recorded download."""
        with self._lock:
            job = self._jobs.get(job_id)
            expected = set(job.asset_ids) if job is not None and job.done else set()
            if not expected and from_download:
                # Job.download asks download_skip about every asset of the job
                # before it fetches any, so after a download this is the
                # job's whole set.
                expected = set(self._assets_seen.get(job_id, ()))
        if expected and expected <= self.downloaded_assets(job_id):
            self.mark_done(job_id)

    def download_skip(self, job_id: str, asset_id: str, path: str) -> bool:
        """Called by Job.download before each asset: True to skip it (the file is already there).

        True when the journal recorded this download and the file at path still
        has the recorded size and SHA-256; False when it is missing (it is
        fetched again) or differs (the download then refuses to overwrite it,
        unless asked). A file the journal has no record of, at the path of an
        asset of one of its jobs, is the download whose record the process did
        not live to write (downloads are fsynced, then renamed into place, so
        the file is complete): it is recorded and kept.
        """
        full = os.path.abspath(path)
        with self._lock:
            self._assets_seen.setdefault(job_id, set()).add(asset_id)
        if self._skip(job_id, asset_id, full):
            self._check_complete(job_id, from_download=False)
            return True
        return False

    def _skip(self, job_id: str, asset_id: str, full: str) -> bool:
        record = self.download_record(job_id, asset_id, full)
        if record is not None:
            digest, size = record
            try:
                if os.stat(full).st_size != size:
                    return False
                return file_sha256(full)[0] == digest
            except FileNotFoundError:
                _debug("journal: %s is gone; fetching it again", full)
                return False
        if not os.path.isfile(full) or not self.owns(job_id):
            return False
        digest, size = file_sha256(full)
        self._record_download(job_id, asset_id, full, digest, size)
        _debug("journal: %s was downloaded but not recorded; recorded now", full)
        return True

    def download_done(self, job_id: str, asset_id: str, path: str) -> None:
        """Called by Job.download after each finished file: records its size and SHA-256."""
        full = os.path.abspath(path)
        digest, size = file_sha256(full)
        self._record_download(job_id, asset_id, full, digest, size)
        self._check_complete(job_id, from_download=True)
