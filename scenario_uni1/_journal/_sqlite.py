"""The journal's SQLite store: one file, shared by every process of one machine.

Storage: the standard library's sqlite3 in WAL mode with synchronous=FULL.
Every record is its own transaction, and a commit returns only once the
write-ahead log is fsynced. A torn last write (the process or the machine
dying in the middle of a commit) loses at most that last transaction: WAL
frames carry checksums, and recovery stops at the first frame that does not
check out, so earlier records are never corrupted. The file is created
readable by its owner only, since prompts may be private.

Many processes: each opens its own connection; readers never block the
writer (WAL), a write waits up to BUSY_TIMEOUT for another's, and a claim is
read and written in one BEGIN IMMEDIATE transaction (the write lock is taken
first, so two processes never both see a row as free). Who holds a claim is
named by host, process id, the process's start time (a recycled pid is not
the same process) and the journal instance; a claim whose process is gone is
dead. The file is for one machine: a claim made on another host cannot be
checked and counts as live (share a journal between machines with the
PostgreSQL store).
"""

import contextlib
import os
import secrets
import socket
import threading
import time

from .. import _core
from ._connection import ProcessConnection
from ._records import FORMAT, VERSION

# A write waits this long for another process's transaction.
BUSY_TIMEOUT = 30.0

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
        owner TEXT,
        PRIMARY KEY (fingerprint, occurrence))""",
    """CREATE TABLE IF NOT EXISTS downloads (
        job_id TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        finished REAL NOT NULL,
        PRIMARY KEY (job_id, asset_id, path))""",
    "CREATE INDEX IF NOT EXISTS submissions_updated ON submissions (updated)",
)

# The journal instances open in this process, by the nonce in their owner
# name: a claim of this process is live only while its journal is open.
_open_nonces: set = set()
_open_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The start time of a running process (clock ticks since boot), "" where
    /proc does not exist, None when there is no such live process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):  # a zombie has finished
        return None
    return fields[19].decode("ascii")


def owner_alive(owner: str, host: str) -> bool:
    """Whether the process (and, in this process, the journal) that made a claim is alive."""
    parts = owner.split("/")
    if len(parts) != 4:
        return False
    claim_host, pid_text, started, nonce = parts
    if claim_host != host:
        return True  # cannot be checked from here: never taken over
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        with _open_lock:
            return nonce in _open_nonces
    now = _start_time(pid)
    return now is not None and (now == started or not now or not started)


class SQLiteStore(ProcessConnection):
    """One connection to the journal file (per process: see _connection.py). Not
    thread-safe: the Journal serialises calls."""

    for_update = ""  # BEGIN IMMEDIATE already holds the write lock

    def __init__(self, path: str) -> None:
        import sqlite3

        self._sqlite3 = sqlite3
        self.integrity_error = sqlite3.IntegrityError
        self.name = path
        self._host = socket.gethostname()
        self._nonce = secrets.token_hex(6)
        self._pid = -1
        self._owner = ""
        self._own(self._open(path))
        with _open_lock:
            _open_nonces.add(self._nonce)

    def _reconnect(self) -> None:
        self._own(self._open(self.name))

    @property
    def owner(self) -> str:
        pid = os.getpid()
        if pid != self._pid:  # computed again in a forked child
            self._owner = f"{self._host}/{pid}/{_start_time(pid) or ''}/{self._nonce}"
            self._pid = pid
        return self._owner

    def alive(self, owner: str) -> bool:
        return owner_alive(owner, self._host)

    def _open(self, path: str):
        sqlite3 = self._sqlite3
        try:
            # A journal beside the files it guards ("renders/journal.sqlite")
            # may come before the directory: it is made, owner-only.
            parent = os.path.dirname(path)
            if parent:
                os.makedirs(parent, mode=0o700, exist_ok=True)
            # Created owner-only before SQLite sees it; its -wal and -shm
            # files take the database's permissions.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            os.close(fd)
        except OSError as exc:
            raise _core.ConfigurationError(
                f"cannot open the journal {path!r}: {exc.strerror}"
            ) from None
        db = None
        try:
            db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            # Someone else's database is refused before anything in it changes
            # (journal_mode=WAL would stick).
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            meta = {}
            if "meta" in tables:
                meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if tables and meta.get("format") != FORMAT:
                raise _core.ConfigurationError(
                    f"{path!r} is an SQLite database but not a scenario_uni1 journal"
                )
            if int(meta.get("version", "0")) > VERSION:
                raise _core.ConfigurationError(
                    f"the journal {path!r} was written by a newer scenario_uni1 "
                    f"(format version {meta.get('version')}); upgrade to use it"
                )
            self._set_wal(db)
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                columns = {r[1] for r in db.execute("PRAGMA table_info(submissions)")}
                if "owner" not in columns:  # a version 1 journal
                    db.execute("ALTER TABLE submissions ADD COLUMN owner TEXT")
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (("format", FORMAT), ("version", str(VERSION))),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise _core.ConfigurationError(f"cannot use {path!r} as a journal: {exc}") from None
        except BaseException:
            if db is not None:
                db.close()
            raise
        return db

    def _set_wal(self, db) -> None:
        # Switching to WAL needs the database to itself for a moment, and the
        # busy handler does not cover it: many processes opening the journal
        # at once retry here.
        end = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except self._sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def query(self, sql: str, params=()) -> list:
        return self.db.execute(sql, params).fetchall()

    def execute(self, sql: str, params=()) -> int:
        """One statement, committed (durably) before returning; the row count."""
        return self.db.execute(sql, params).rowcount

    @contextlib.contextmanager
    def transaction(self):
        """Statements read and written under the database's write lock, committed together."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        with _open_lock:
            _open_nonces.discard(self._nonce)
        self._close_own()
