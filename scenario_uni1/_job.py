"""Job: a generation job on the server, as users hold it.

The binding's _core.Job holds the job's state and makes its requests; this
class holds one and adds what belongs to Python: which client the job
belongs to, pickling, Image objects, the journal's bookkeeping around
downloads and the progress display. The binding never calls back into this
module: what it needs for one call (a progress callable, a skip predicate)
is passed as an argument of that call.

Where a job belongs. A job made on a client (generate, job(), submit,
resume) is bound to it. An unpickled job carries only its state, base_url
and project_id: unpickling needs no credentials and no network. Its first
request binds it (_client_for) to a live client of this process for the
same base_url and project_id, else to one built from the environment for
them; only then can ConfigurationError arise. copy.copy keeps the client.
"""

import os
import sys
import threading

from . import _core

TYPE_CHECKING = False  # type checkers take the branch; nothing imports typing at run time
if TYPE_CHECKING:
    from pathlib import Path

    from ._client import Client
    from ._image import Image


class Job:
    """A generation job on the server (made by Client.generate, Client.job, ...).

    id, status, progress (0..1), done, asset_ids, error, hint, cost and raw
    (the last job JSON as a dict) are as of the last request. refresh() is
    one GET; wait() polls until a terminal status (JobFailedError,
    JobCanceledError); images() and download() wait if needed, then fetch
    every asset; cancel() asks the server to cancel and stops local waits.
    """

    __slots__ = ("__weakref__", "_base_url", "_client", "_job", "_project_id")

    _job: "_core.Job"
    _client: "Client | None"  # None until an unpickled job binds
    _base_url: "str | None"  # where an unpickled job binds (see _client_for)
    _project_id: "str | None"

    def __init__(self) -> None:
        raise TypeError(
            "Job objects are made by a Client (client.generate, client.job, client.submit)"
        )

    @classmethod
    def _of(cls, client: "Client", job: "_core.Job") -> "Job":
        """The public face of a _core.Job made on client."""
        self = object.__new__(cls)
        self._job = job
        self._client = client
        self._base_url = self._project_id = None
        return self

    @classmethod
    def _unbound(cls, job: "_core.Job", base_url: "str | None", project_id: "str | None") -> "Job":
        self = object.__new__(cls)
        self._job = job
        self._client = None
        self._base_url = base_url
        self._project_id = project_id
        return self

    # -- where it belongs ------------------------------------------------------------

    def _bound(self) -> "Client":
        """The job's client, binding an unpickled job first (see the module's doc)."""
        client = self._client
        if client is not None:
            return client
        from ._client import Client

        with _bind_lock:
            if self._client is not None:
                return self._client
            client = _client_for(self._base_url, self._project_id)
            if not issubclass(type(client), Client):
                # type(), not isinstance(): a Mock(spec=Client) claims the class.
                raise TypeError(
                    f"the client for job {self.id} must be a scenario_uni1 Client, "
                    f"not {type(client).__qualname__}"
                )
            self._job._bind(client._c_client)
            self._client = client
        return client

    def _core_job(self) -> "_core.Job":
        """The _core.Job, bound to its client (what Client._start takes)."""
        self._bound()
        return self._job

    def _call(self, method, *args, **kwargs):
        # The binding raises JobError with its own _core.Job: users get this one.
        try:
            return method(*args, **kwargs)
        except _core.JobError as exc:
            if exc.job is self._job:
                exc.job = self
            raise

    # -- state -------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def status(self) -> str:
        """pending, queued, warming-up, in-progress, finalizing, success, failure, canceled."""
        return self._job.status

    @property
    def progress(self) -> float:
        return self._job.progress

    @property
    def done(self) -> bool:
        return self._job.done

    @property
    def asset_ids(self) -> tuple[str, ...]:
        return self._job.asset_ids

    @property
    def error(self) -> "str | None":
        return self._job.error

    @property
    def hint(self) -> "str | None":
        return self._job.hint

    @property
    def cost(self) -> "float | None":
        return self._job.cost

    @property
    def raw(self) -> dict:
        return self._job.raw

    @property
    def client(self) -> "Client":
        """The Client this job uses (an unpickled job binds to one on first use)."""
        return self._bound()

    def __repr__(self) -> str:
        return repr(self._job)

    # -- requests ------------------------------------------------------------------------

    def refresh(self, *, timeout: "float | None" = None) -> "Job":
        """One GET; updates the job in place and returns it."""
        self._call(self._core_job().refresh, timeout=timeout)
        return self

    def wait(self, timeout: "float | None" = None, *, progress=None) -> "Job":
        """Poll until a terminal status (GIL released; Ctrl-C works). Returns the job.

        timeout is one deadline for the whole wait (TimeoutError). progress is
        True (a progress line, or bar), False/None, or a callable taking the
        job, called after each poll. Raises JobFailedError or JobCanceledError
        when the job ends badly.
        """
        job = self._core_job()
        if progress is True:
            from ._progress import ProgressPrinter

            display = ProgressPrinter()
            callback = lambda _job: display(self)  # noqa: E731
        elif callable(progress):
            user = progress
            callback = lambda _job: user(self)  # noqa: E731
        else:
            callback = progress  # None or False; anything else is refused by the binding
        self._call(job.wait, timeout, progress=callback)
        return self

    def images(self, *, timeout: "float | None" = None) -> "list[Image]":
        """Wait if needed, then fetch every asset into memory: a list of Image."""
        from ._image import image_from_fields

        fields = self._call(self._core_job().images, timeout=timeout)
        return [image_from_fields(*f) for f in fields]

    def download(
        self,
        dest: "str | os.PathLike" = ".",
        *,
        overwrite: bool = False,
        timeout: "float | None" = None,
    ) -> "list[Path]":
        """Wait if needed, then stream every asset to <dest>/<asset_id>.<ext>, atomically.

        Returns the paths. With a journal (Client(journal=...)), a file the
        journal recorded and that is still intact is not fetched again, and
        each file written is recorded.
        """
        job = self._core_job()
        journal = self._bound()._journal
        skip = None
        if journal is not None:
            job_id = job.id

            def skip(asset_id: str, path: str) -> bool:
                return journal.download_skip(job_id, asset_id, path)

        done = self._call(job.download, dest, overwrite=overwrite, timeout=timeout, skip=skip)
        if journal is not None:
            for asset_id, path, fetched in done:
                if fetched:
                    journal.download_done(job.id, asset_id, os.fspath(path))
        return [path for _asset_id, path, _fetched in done]

    def cancel(self, *, timeout: "float | None" = None) -> None:
        """Ask the server to cancel, and stop the waits running on this job now.

        They raise JobCanceledError; a refusal by the server raises APIError.
        """
        self._call(self._core_job().cancel, timeout=timeout)

    # -- pickling and copying ----------------------------------------------------------------

    def __reduce__(self):
        # The job's state and where it belongs; never the client or its credentials.
        client = self._client
        if client is not None:
            base_url, project_id = client.base_url, client.project_id
        else:
            base_url, project_id = self._base_url, self._project_id
        return (_rebuild, (*self._job._state(), base_url, project_id))

    def __copy__(self) -> "Job":
        """The same job on the same client, with a state of its own."""
        other = object.__new__(Job)
        other._job = self._job.__copy__()
        other._client = self._client
        other._base_url = self._base_url
        other._project_id = self._project_id
        return other

    def __deepcopy__(self, memo: object) -> "Job":
        return self.__copy__()


def _rebuild(
    job_id: str,
    raw_json: "str | None" = None,
    cost: "float | None" = None,
    base_url: "str | None" = None,
    project_id: "str | None" = None,
) -> Job:
    """Unpickle a Job: its state only; it binds at its first request (no client here)."""
    for name, value in (("base_url", base_url), ("project_id", project_id)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"_rebuild: {name} must be a str or None")
    return Job._unbound(_core._rebuild_job(job_id, raw_json, cost), base_url, project_id)


# -- the client an unpickled job binds to -----------------------------------------------------

# Two threads binding one unpickled job bind it to one client.
_bind_lock = threading.Lock()


def _client_for(base_url: "str | None", project_id: "str | None") -> "Client":
    """The client an unpickled job binds to at its first request.

    A live client of this process with the same base_url and project_id (the
    default client first), else this process's shared client for them
    (scenario_uni1.shared_client: built once, with the credentials of
    set_credentials_provider or of the environment). base_url None (a pickle
    that did not record it) means the default client.
    """
    package = sys.modules[__package__]
    if base_url is None:
        return package.default_client()
    from ._client import live_client, serves
    from ._workers import shared_client

    client = package._default
    if client is not None and serves(client, base_url, project_id):
        return client
    client = live_client(base_url, project_id)
    if client is not None:
        return client
    if project_id is None:
        # The default client, when the environment points it at this server.
        try:
            client = package.default_client()
        except _core.ConfigurationError:
            client = None
        if client is not None and serves(client, base_url, project_id):
            return client
    return shared_client(base_url=base_url, project_id=project_id)


def _forget_built_clients() -> "list[Client]":
    """The shared clients (those built for unpickled jobs among them), forgotten
    (the caller closes them)."""
    from ._workers import forget

    return forget()


Job.__module__ = "scenario_uni1"
