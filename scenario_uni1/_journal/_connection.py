"""A store's database connection, one per process (both stores use it).

An SQLite connection's locks and a PostgreSQL session belong to the process
that opened them, and fork() copies neither usefully: SQLite forbids using a
connection across fork(), and two processes on one PostgreSQL socket mix
their messages. A store's connection is therefore re-made in a fork()ed child
at its first use (the store's _reconnect). The parent's connection is kept
referenced there and never used nor closed: closing it from the child could
act on the parent's locks or session.
"""

import os

TYPE_CHECKING = False  # type checkers take the branch below; nothing imports typing
if TYPE_CHECKING:
    from typing import Any

_inherited: list = []


class ProcessConnection:
    """Mixin: `db` is this process's connection; the store gives _reconnect()."""

    _db: "Any" = None  # a sqlite3 or psycopg connection
    _db_pid = -1

    def _own(self, db) -> None:
        """db is this process's connection from now on."""
        self._db = db
        self._db_pid = os.getpid()

    def _reconnect(self) -> None:
        """Opens this process's connection (and calls _own with it)."""
        raise NotImplementedError

    def _ensure_own(self) -> None:
        if self._db_pid != os.getpid():
            _inherited.append(self._db)
            self._reconnect()

    @property
    def db(self):
        self._ensure_own()
        return self._db

    def _close_own(self) -> None:
        """Closes this process's connection; in a child that never used it, nothing."""
        if self._db_pid == os.getpid():
            self._db.close()
