"""The journal's PostgreSQL store: one ledger for every worker of a cluster.

Client(journal="postgresql://user@host/db") keeps the journal in the tables of
the schema scenario_uni1 of that database (created on first use; the user
needs the right to create it, or an administrator creates it once). Every
statement commits before it returns; a claim is read with SELECT ... FOR
UPDATE and written in the same transaction.

Who holds a claim is a key that the claiming connection holds a session-level
advisory lock on: the server drops the lock when the connection ends (the
process exited, was killed, or its machine went away and TCP keepalive gave
up), and from then on the claim is dead, whatever host made it. A connection
pooler in transaction mode (pgbouncer) would share sessions: connect to the
server or to a session-mode pool.

psycopg 3 is needed (`pip install scenario_uni1[cluster]` or
`pip install "psycopg[binary]"`); it is imported only for such a journal.
The connection string never leaves this module: Client.journal and every
message show it without its password.
"""

import contextlib
import secrets
import urllib.parse

from .. import _core
from ._connection import ProcessConnection
from ._records import FORMAT, VERSION

SCHEMA_NAME = "scenario_uni1"

# Serialises the first creation of the schema by many workers at once
# (CREATE ... IF NOT EXISTS races on the catalogs otherwise).
_DDL_LOCK = 0x5C1E0001

_SCHEMA = (
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA_NAME}",
    f"SET search_path TO {SCHEMA_NAME}",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS submissions (
        fingerprint TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        request_json TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('sending', 'submitted', 'done', 'failed')),
        sent_at DOUBLE PRECISION NOT NULL,
        job_id TEXT UNIQUE,
        created DOUBLE PRECISION NOT NULL,
        updated DOUBLE PRECISION NOT NULL,
        owner TEXT,
        PRIMARY KEY (fingerprint, occurrence))""",
    """CREATE TABLE IF NOT EXISTS downloads (
        job_id TEXT NOT NULL,
        asset_id TEXT NOT NULL,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size BIGINT NOT NULL,
        finished DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (job_id, asset_id, path))""",
    "CREATE INDEX IF NOT EXISTS submissions_updated ON submissions (updated)",
)


def is_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password (and without a password= parameter)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = urllib.parse.urlencode(
        [
            (k, v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() != "password"
        ]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _sql(statement: str) -> str:
    # The rules are written with SQLite's ? placeholders (no literal ? occurs).
    return statement.replace("?", "%s")


class PostgresStore(ProcessConnection):
    """One session with the ledger (per process: see _connection.py). Not thread-safe:
    the Journal serialises calls."""

    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.name = redact(url)
        try:
            import psycopg
        except ImportError:
            raise _core.ConfigurationError(
                "a PostgreSQL journal needs psycopg 3: pip install 'psycopg[binary]' "
                "(or scenario_uni1[cluster])"
            ) from None
        self._psycopg = psycopg
        self.integrity_error = psycopg.IntegrityError
        self._url = url  # for a fork()ed child's own session; never shown
        self._own(self._connect())
        try:
            self._setup()
            self._key = self._take_key()
        except BaseException:
            self._db.close()
            raise

    def _connect(self):
        try:
            return self._psycopg.connect(
                self._url, autocommit=True, application_name="scenario_uni1"
            )
        except self._psycopg.Error as exc:
            # libpq's message names host and user, never the password.
            raise _core.ConfigurationError(
                f"cannot connect to the journal {self.name}: {str(exc).strip()}"
            ) from None

    def _reconnect(self) -> None:
        # A fork()ed child's own session, with its own advisory lock: claims
        # the child makes die with the child, not live on with the parent's
        # session.
        self._own(self._connect())
        self._setup()  # the session's search_path, as for any new session
        self._key = self._take_key()

    @property
    def owner(self) -> str:
        self._ensure_own()  # a forked child takes its own key first
        return f"pg/{self._key}"

    def _setup(self) -> None:
        psycopg = self._psycopg
        try:
            with self.db.transaction():
                self.db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                exists = self.db.execute(
                    "SELECT 1 FROM information_schema.tables"
                    " WHERE table_schema = %s AND table_name = 'meta'",
                    (SCHEMA_NAME,),
                ).fetchone()
                meta: dict = {}
                if exists:
                    meta = dict(
                        self.db.execute(f"SELECT key, value FROM {SCHEMA_NAME}.meta").fetchall()
                    )
                    if meta.get("format") != FORMAT:
                        raise _core.ConfigurationError(
                            f"the schema {SCHEMA_NAME} of {self.name} is not a scenario_uni1 journal"
                        )
                    if int(meta.get("version", "0")) > VERSION:
                        raise _core.ConfigurationError(
                            f"the journal {self.name} was written by a newer scenario_uni1 "
                            f"(format version {meta.get('version')}); upgrade to use it"
                        )
                for statement in _SCHEMA:
                    self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES (%s, %s), (%s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    ("format", FORMAT, "version", str(VERSION)),
                )
            # SET inside the transaction is kept once it commits.
        except psycopg.Error as exc:
            raise _core.ConfigurationError(
                f"cannot use {self.name} as a journal: {str(exc).strip()}"
            ) from None

    def _try_lock(self, key: int) -> bool:
        row = self.db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])

    def _take_key(self) -> int:
        while True:
            key = secrets.randbits(62) + 1
            if self._try_lock(key):
                return key

    def alive(self, owner: str) -> bool:
        """Whether the connection that made a claim still holds its lock."""
        prefix, _, key_text = owner.partition("/")
        if prefix != "pg" or not key_text.isdigit():
            return False
        key = int(key_text)
        self._ensure_own()
        if key == self._key:  # this session's
            return True
        if self._try_lock(key):
            self.db.execute("SELECT pg_advisory_unlock(%s)", (key,))
            return False
        return True

    def query(self, sql: str, params=()) -> list:
        try:
            return self.db.execute(_sql(sql), params).fetchall()
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from None

    def execute(self, sql: str, params=()) -> int:
        try:
            return self.db.execute(_sql(sql), params).rowcount
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from None

    def _lost(self, exc: BaseException) -> BaseException:
        # The server went away or ended the session: its claims are dead for
        # the other workers from now on, and this client cannot record.
        return _core.Uni1Error(f"the journal {self.name} is unreachable: {str(exc).strip()}")

    @contextlib.contextmanager
    def transaction(self):
        try:
            with self.db.transaction():
                yield self
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from None

    def close(self) -> None:
        self._close_own()  # the server drops the advisory lock with the session
