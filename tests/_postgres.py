"""A real PostgreSQL server for the tests: Debian's postgresql package, started
on a temporary directory (initdb + pg_ctl), listening on 127.0.0.1 and on a
unix socket in that directory only, stopped at the end of the session.

initdb and postgres refuse to run as root: as root the server runs as the
unprivileged `nobody` (setpriv), which owns the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid

import pytest


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed (Debian: apt-get install postgresql); "
                "scripts/dev.sh installs it for the cluster layer"
            )
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="uni1-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.user = "uni1"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._prefix = [
                "setpriv",
                f"--reuid={nobody.pw_uid}",
                f"--regid={nobody.pw_gid}",
                "--clear-groups",
                "--",
            ]
        env = {**os.environ, "LC_ALL": "C", "HOME": self.dir}
        self._env = env
        self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port}"
            f" -c unix_socket_directories={self.dir} -c fsync=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.dir + "/log", "-w", "start")

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._prefix, os.path.join(self.bindir, tool), *args],
            capture_output=True,
            text=True,
            env=self._env,
            cwd=self.dir,
            timeout=120,
        )
        if done.returncode != 0:
            log = ""
            if os.path.exists(self.dir + "/log"):
                with open(self.dir + "/log") as f:
                    log = f.read()
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_journal(postgres_server) -> str:
    """The URL of a fresh database on the test server."""
    return postgres_server.create_database()
