"""The submission journal behind Client(journal=path).

A generate request has no idempotency key: a POST that reached the server is a
paid job. The journal makes a batch safe to re-run after the process died
(SIGKILL, power cut, Ctrl-C): finished items are skipped, in-flight jobs are
re-attached, missing files are fetched again, and nothing is submitted twice.

Storage: one SQLite database (standard library) in WAL mode with
synchronous=FULL. Every record is its own transaction, and a commit returns
only once the write-ahead log is fsynced. A torn last write (the process or
the machine dying in the middle of a commit) loses at most that last
transaction: WAL frames carry checksums, and recovery stops at the first frame
that does not check out, so earlier records are never corrupted.

What is recorded, and when:
- submissions: one row per work item, inserted and committed BEFORE the request
  is sent (state 'sending', with the time), given the job id as soon as the
  answer arrives ('submitted'), 'done' once every file of the job has been
  downloaded (or its images fetched by run() or a Generation), 'failed' once
  resume() or a Generation has seen the job end in failure or cancellation.
- downloads: each finished file (job id, asset id, absolute path) with its size
  and SHA-256.
Nothing secret is stored: no credentials, no URLs (signed CDN URLs are
capabilities), only prompts, asset ids, job ids, paths and hashes. The file is
created readable by its owner only, since prompts may be private.

Work items. A generate() call is identified by (fingerprint, occurrence):
- fingerprint: SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8)
  of the request as it would be POSTed, with one refinement: an input that is
  uploaded (a path, bytes, a file object, a PIL image) stands as the SHA-256
  and MIME type of its bytes, not as the asset id of its upload, because every
  upload gets a new asset id and a re-run must map to the same row. The
  project id is part of it (the same prompt in another project is other work).
- occurrence: the n-th call with that fingerprint on this Client is occurrence
  n (1, 2, ...). The same prompt sent 4 times for 4 images is 4 items, and
  re-running the same script with the same journal maps each call to the same
  row again. A script whose calls change order between runs still maps
  identical requests to each other, which is all that matters: they are
  interchangeable.

Re-running. A row with a job id is re-attached (client.job: one GET, no
POST). A row still 'sending' means the process died between sending and
recording the answer: the job list is searched for a job with that input,
created after the send (minus clock skew) and not owned by another row
(Client._find_job). Found: it is adopted. Not found: the POST never created a
job and it is sent again, but only once the POST, had it reached the server,
would have landed: a server finishes a request whose client went away, so
"not in the list yet" right after a crash proves nothing. The wait is the
client's request timeout (1 s to 120 s: the longest the dead process would
have waited for the answer) plus its settle window (how long after a failed
POST its job may still appear, see Client), polling the list every second;
only a re-run that follows the crash within that time waits at all. After a failed
send the row is deleted only when the answer proves nothing was created (a
validation error, HTTP 4xx other than 408/429); any other error keeps it for
the next run to reconcile.

Client.submit and generate_many take the same decisions without blocking the
caller (start_generation, in _journal_engine.py): the item's pipeline runs on
the client's engine, which attaches to a recorded job, or reconciles a
'sending' row itself (the core's look and settle rules, given the row's send
time) before it would POST; the records are written from the engine thread.

Jobs of other items are never adopted: every reconciliation, the core's own
after an uncertain POST included, is given the journal's job ids to exclude,
on top of the claims the core shares between all clients of the process.

One Client at a time may use a journal: the journal takes an exclusive lock
(a `<journal>.lock` file, flock) for the client's lifetime, because a second
live user would take the first one's in-flight rows for dead ones.
"""

import hashlib
import heapq
import json
import os
import sys
import threading
import time

from . import _core

FORMAT = "scenario_uni1.journal"
VERSION = 1

SENDING = "sending"
SUBMITTED = "submitted"
DONE = "done"
FAILED = "failed"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS submissions (
        fingerprint TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        request_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sending', 'submitted', 'done', 'failed')),
        sent_at REAL NOT NULL,
        job_id TEXT UNIQUE,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        PRIMARY KEY (fingerprint, occurrence))""",
    """CREATE TABLE IF NOT EXISTS downloads (
        job_id TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        finished REAL NOT NULL,
        PRIMARY KEY (job_id, asset_id, path))""",
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

_CHUNK = 1 << 20


def _debug(message: str, *args: object) -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("scenario_uni1").debug(message, *args)


def canonical_json(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def fingerprint(request: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of a request description."""
    return hashlib.sha256(canonical_json(request)).hexdigest()


def input_key(item: object) -> object:
    """How an input stands in a fingerprint: an asset id as is, an upload as its content hash."""
    if item is None or isinstance(item, str):
        return item
    digest = getattr(item, "sha256", None)
    if not isinstance(digest, str):
        data = getattr(item, "data", None)
        if data is not None:
            digest = hashlib.sha256(data).hexdigest()
        else:
            path = getattr(item, "path", None)
            if path is None:
                raise TypeError(f"cannot fingerprint an input of type {type(item).__name__}")
            digest = file_sha256(path)[0]
    return {"sha256": digest, "mime_type": getattr(item, "mime_type", None)}


def file_sha256(path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file's contents."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            h.update(chunk)
    return h.hexdigest(), size


def _has_uploads(request: dict) -> bool:
    """Whether a recorded request holds an input to upload (its content hash, not an asset id).

    start_generation records a row before the engine uploads its inputs, and
    the engine hands the uploaded ids to the journal (on_ready) before the
    POST: a row that still holds a hash died before its POST was sent.
    """
    inputs = [request.get("source"), *request.get("image_refs", ())]
    return any(item is not None and not isinstance(item, str) for item in inputs)


def _created_nothing(exc: BaseException) -> bool:
    """Whether an error from _submit proves that no job was created.

    Only answers that refuse the request qualify: a validation error raised
    before anything is sent, a closed client, and an HTTP 4xx, 408 and 429
    included (the core's rule: it sends again after those without looking for
    a job; a 429 of the team's concurrency ceiling is how generate_many learns
    to hold its submissions, and it sends the item again). Everything else
    (network errors, timeouts, 5xx, Ctrl-C, SubmissionUncertainError) leaves
    the row for a later reconciliation, which is always safe.
    """
    if isinstance(exc, (_core.InvalidRequestError, _core.ConfigurationError)):
        return True
    if isinstance(exc, _core.APIError):
        status = exc.status_code
        return isinstance(status, int) and 400 <= status < 500
    return False


class Entry:
    """One submissions row."""

    __slots__ = ("fingerprint", "job_id", "occurrence", "request", "sent_at", "state")

    def __init__(self, fingerprint, occurrence, request_json, state, sent_at, job_id):
        self.fingerprint = fingerprint
        self.occurrence = occurrence
        self.request = json.loads(request_json)
        self.state = state
        self.sent_at = sent_at
        self.job_id = job_id

    def __repr__(self) -> str:
        return (
            f"<journal entry {self.fingerprint[:12]}#{self.occurrence} {self.state}"
            f" job={self.job_id}>"
        )


_ENTRY_COLUMNS = "fingerprint, occurrence, request_json, state, sent_at, job_id"


def _lock_file(path: str):
    """An exclusive flock on path + '.lock' (an open file), or None where flock does not exist.

    A file object, not a bare descriptor: a client dropped without close()
    releases the lock when it is collected.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise _core.ConfigurationError(
            f"cannot open the journal lock {lock_path!r}: {exc.strerror}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise _core.ConfigurationError(
            f"the journal {path!r} is in use by another client (in this process or another); "
            "close that client first, or use another journal"
        ) from None
    return os.fdopen(fd, "r+b", buffering=0)


class Journal:
    """The journal of one Client. Thread-safe: one connection behind a lock.

    The download hooks download_skip and download_done are handed to the C
    client by scenario_uni1.Client, and called by its Job.download().
    """

    def __init__(self, path) -> None:
        import sqlite3

        self._sqlite3 = sqlite3
        self.path = os.fsdecode(os.fspath(path))
        self._lock = threading.Lock()
        # Held while a 'sending' row is matched to a job on the server, so two
        # threads never adopt the same job for two rows.
        self._claim_lock = threading.Lock()
        self._occurrences: dict[str, int] = {}
        # Occurrences handed out by this client whose row was deleted (the
        # request created nothing): the next identical request takes the
        # lowest of them before a new one. A batch sending an item again
        # after a refusal (generate_many after the ceiling's 429) thereby
        # keeps the numbering a re-run of the same batch gives its items.
        self._free: dict[str, list[int]] = {}
        # The jobs this journal handed out and that are not finished yet: their
        # asset_ids tell the download hooks when a job's files are all there.
        self._jobs: dict = {}
        # Assets Job.download asked about, per job (for jobs not in _jobs).
        self._assets_seen: dict[str, set] = {}
        # Seconds to wait for an interrupted POST to land (None: from the
        # client's timeout; see _SETTLE_MIN).
        self.settle_time: float | None = None
        self._db = None
        self._lock_file = _lock_file(self.path)
        try:
            self._db = self._open()
            # Every job id of the journal, kept in memory: each submission
            # hands them all to the core to exclude, and a batch of N items
            # must not read N rows N times. Rows with a job are never deleted.
            self._job_ids = {
                r[0]
                for r in self._db.execute("SELECT job_id FROM submissions WHERE job_id IS NOT NULL")
            }
        except BaseException:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._release_lock()
            raise

    def _open(self):
        sqlite3 = self._sqlite3
        try:
            # Created owner-only before SQLite sees it; its -wal and -shm
            # files take the database's permissions.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)
        except OSError as exc:
            raise _core.ConfigurationError(
                f"cannot open the journal {self.path!r}: {exc.strerror}"
            ) from None
        db = None
        try:
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            # Someone else's database is refused before anything in it changes
            # (journal_mode=WAL would stick).
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            meta = {}
            if "meta" in tables:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if tables and meta.get("format") != FORMAT:
                raise _core.ConfigurationError(
                    f"{self.path!r} is an SQLite database but not a scenario_uni1 journal"
                )
            if int(meta.get("version", "0")) > VERSION:
                raise _core.ConfigurationError(
                    f"the journal {self.path!r} was written by a newer scenario_uni1 "
                    f"(format version {meta.get('version')}); upgrade to use it"
                )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                if not meta:
                    db.executemany(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                        (("format", FORMAT), ("version", str(VERSION))),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise _core.ConfigurationError(
                f"cannot use {self.path!r} as a journal: {exc}"
            ) from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        return db

    def _release_lock(self) -> None:
        f, self._lock_file = self._lock_file, None
        if f is not None:
            f.close()  # closing the file drops the flock

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            self._jobs.clear()  # they refer to the client: no cycle left behind
            if db is not None:
                db.close()
        self._release_lock()

    @property
    def closed(self) -> bool:
        return self._db is None

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<scenario_uni1 journal {self.path!r}{state}>"

    # -- database helpers ------------------------------------------------------

    def _conn(self):
        db = self._db
        if db is None:
            raise _core.ConfigurationError("the journal is closed (its client was closed)")
        return db

    def _write(self, sql: str, params=()) -> int:
        """One statement, committed (durably) before returning; the row count."""
        with self._lock:
            return self._conn().execute(sql, params).rowcount

    def _read(self, sql: str, params=()) -> list:
        with self._lock:
            return self._conn().execute(sql, params).fetchall()

    # -- submissions -----------------------------------------------------------

    def next_occurrence(self, fp: str) -> int:
        with self._lock:
            free = self._free.get(fp)
            if free:
                return heapq.heappop(free)
            n = self._occurrences.get(fp, 0) + 1
            self._occurrences[fp] = n
            return n

    def entry(self, fp: str, occurrence: int) -> "Entry | None":
        rows = self._read(
            f"SELECT {_ENTRY_COLUMNS} FROM submissions WHERE fingerprint = ? AND occurrence = ?",
            (fp, occurrence),
        )
        return Entry(*rows[0]) if rows else None

    def entries(self, states=None) -> "list[Entry]":
        """Every row (or those in `states`), oldest first."""
        sql = f"SELECT {_ENTRY_COLUMNS} FROM submissions"
        params: tuple = ()
        if states is not None:
            states = tuple(states)
            sql += " WHERE state IN ({})".format(", ".join("?" * len(states)))
            params = states
        sql += " ORDER BY created, fingerprint, occurrence"
        return [Entry(*row) for row in self._read(sql, params)]

    def job_ids(self) -> list:
        with self._lock:
            self._conn()
            return list(self._job_ids)

    def _begin_sending(self, fp: str, occurrence: int, request: dict) -> float:
        """Record (and commit) that this request is about to be sent; its time."""
        now = time.time()
        self._write(
            "INSERT INTO submissions (fingerprint, occurrence, request_json, state, sent_at,"
            " job_id, created, updated) VALUES (?, ?, ?, 'sending', ?, NULL, ?, ?)"
            " ON CONFLICT (fingerprint, occurrence) DO UPDATE SET"
            " request_json = excluded.request_json, state = 'sending', sent_at = excluded.sent_at,"
            " updated = excluded.updated WHERE submissions.job_id IS NULL",
            (fp, occurrence, canonical_json(request).decode("utf-8"), now, now, now),
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
        """Give the row its job; False when another row of the journal has that job."""
        with self._lock:
            try:
                self._conn().execute(
                    "UPDATE submissions SET job_id = ?, state = 'submitted', updated = ?"
                    " WHERE fingerprint = ? AND occurrence = ?",
                    (job_id, time.time(), fp, occurrence),
                )
            except self._sqlite3.IntegrityError:
                return False
            self._job_ids.add(job_id)
        return True

    def _forget(self, fp: str, occurrence: int) -> None:
        """Delete a row that has no job; its occurrence is free again if this client gave it out."""
        with self._lock:
            cursor = self._conn().execute(
                "DELETE FROM submissions WHERE fingerprint = ? AND occurrence = ?"
                " AND job_id IS NULL",
                (fp, occurrence),
            )
            deleted = cursor.rowcount
            if deleted and occurrence <= self._occurrences.get(fp, 0):
                heapq.heappush(self._free.setdefault(fp, []), occurrence)

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
                "UPDATE submissions SET updated = ?, occurrence = (SELECT MIN(0, IFNULL("
                "MIN(occurrence), 0)) - 1 FROM submissions WHERE fingerprint = ?)"
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
        without network I/O: reads the journal, and for a new item commits its
        'sending' row. See _journal_engine.
        """
        from ._journal_engine import start_generation

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
        fp = fingerprint(
            {
                "prompt": prompt,
                "source": input_key(src),
                "image_refs": [input_key(r) for r in refs],
                "aspect_ratio": aspect_ratio,
                "output_format": output_format,
                "web_search": bool(web_search),
                "project_id": client.project_id,
            }
        )
        occurrence = self.next_occurrence(fp)
        entry = self.entry(fp, occurrence)
        if entry is not None and entry.job_id:
            _debug("journal: item %s#%d is %s; re-attaching", fp[:12], occurrence, entry.job_id)
            job = client.job(entry.job_id)
            if entry.state in (SENDING, SUBMITTED):
                self._register(job)
            return job
        if entry is not None and not _has_uploads(entry.request):
            # The process died between sending and recording the answer (or
            # the send failed in a way that proves nothing): ask the server.
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
                raise
            if self._claim(fp, occurrence, job.id):
                _debug("journal: item %s#%d submitted as %s", fp[:12], occurrence, job.id)
                return self._register(job)
            # The job the core returned belongs to another item of this journal.
            # The core was given the journal's jobs to leave alone, so only a
            # row recorded by another thread meanwhile can do that. Reconcile
            # again, knowing the journal's jobs: the job this POST created, if
            # any, is found; if none, send again. The POST was answered: no
            # need to wait for it to land.
            _debug("journal: %s already belongs to another item; reconciling", job.id)
            entry = self.entry(fp, occurrence)
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
            "INSERT OR REPLACE INTO downloads (job_id, asset_id, path, sha256, size, finished)"
            " VALUES (?, ?, ?, ?, ?, ?)",
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
