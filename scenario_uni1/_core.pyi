"""Type stubs for scenario_uni1._core, the C extension.

User code should import from ``scenario_uni1``; names starting with ``_`` are
the glue's building blocks, not public API.
"""

import builtins
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias, final

from typing_extensions import Self

from ._job import Job as _PublicJob

__version__: str
curl_version: str  # the linked libcurl, e.g. "7.88.1"
ASPECT_RATIOS: tuple[str, ...]
OUTPUT_FORMATS: tuple[str, ...]
DEFAULT_BASE_URL: str

class Uni1Error(Exception): ...
class InvalidRequestError(Uni1Error, ValueError): ...
class InvalidRequestTypeError(InvalidRequestError, TypeError): ...  # a bad argument's type
class ConfigurationError(Uni1Error): ...

class APIError(Uni1Error):
    status_code: int | None
    reason: str | None  # the server's message
    body: str | None  # the raw error body
    retryable: bool
    trace_id: str | None

class AuthenticationError(APIError): ...
class PermissionDeniedError(APIError): ...
class NotFoundError(APIError): ...

class RateLimitError(APIError):
    retry_after: float | None

class ServerError(APIError): ...
class ConnectionError(Uni1Error, builtins.ConnectionError): ...
class TimeoutError(Uni1Error, builtins.TimeoutError): ...

class SubmissionUncertainError(Uni1Error):
    request: dict[str, Any]  # the generate body that may have been accepted
    sent_at: str  # ISO 8601 UTC time the request was sent

class JobError(Uni1Error):
    # The binding raises it with its _core.Job; scenario_uni1 hands users the
    # exception with its own Job in place.
    job: _PublicJob | Job
    error: str | None
    hint: str | None

class JobFailedError(JobError): ...
class JobCanceledError(JobError): ...

def validate_generate(
    prompt: str,
    source: str | None = None,
    image_refs: Sequence[str] = (),
    aspect_ratio: str | None = None,
    output_format: str = "png",
    web_search: bool = False,
) -> None:
    """Raise InvalidRequestError if the request breaks the API contract.

    source and image_refs must be asset ids here (the glue uploads other
    inputs first, and validates with placeholder ids before uploading)."""

@final
class Deadline:
    """A timeout checked once, as an absolute time (private: for the glue).

    Passed as the timeout of a call, it is used as it is: each step of a
    sequence gets the same end, never "seconds left" recomputed."""

    def __new__(cls, timeout: float | Deadline | None = None) -> Self: ...
    @property
    def at(self) -> float | None:
        """When it passes, in time.monotonic() seconds, or None."""
    def remaining(self) -> float | None:
        """Seconds left, None for no deadline; TimeoutError once passed."""

_Timeout: TypeAlias = float | Deadline | None

def _fs_path(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes], what: str, *, setting: bool = False
) -> bytes:
    """A path checked by the rule every call uses, in the filesystem encoding."""

@final
class Client:
    """Holds settings and a pool of connections; safe to share between threads.

    Credentials are NOT read from the environment here: scenario_uni1.Client
    (which holds one) resolves them and passes them explicitly."""

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        bearer_token: str | None = None,
        base_url: str | None = None,
        project_id: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        user_agent: str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        proxy: str | None = None,
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        settle_window: float = 20.0,
        resend_uncertain: bool = True,
        _ca_fallback: str | os.PathLike[str] | None = None,
    ) -> None:
        """_ca_fallback is the glue's: the CA bundle tried when none was given
        and the system has none (certifi's)."""
    @property
    def base_url(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def timeout(self) -> float: ...
    @property
    def max_retries(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def request_count(self) -> int:
        """HTTP requests this client has sent, retries included."""
    def _submit(
        self,
        prompt: str,
        source: str | None = None,
        image_refs: Sequence[str] = (),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
        *,
        timeout: _Timeout = None,
        exclude: Sequence[str] = (),
    ) -> Job:
        """POST the generation (ids only; validated first). GIL released.

        After an uncertain attempt, jobs in exclude are never adopted."""
    def _find_job(
        self,
        prompt: str,
        source: str | None = None,
        image_refs: Sequence[str] = (),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
        *,
        sent_at: float,
        exclude: Sequence[str] = (),
        timeout: _Timeout = None,
    ) -> Job | None:
        """The job an interrupted submission of this request created, or None."""
    def _start(
        self,
        prompt: str | None,
        source: str | int | None = None,
        image_refs: Sequence[str | int] = (),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
        *,
        uploads: Sequence[tuple[bytes | None, str | os.PathLike[str] | None, str, str]] = (),
        download: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        timeout: _Timeout = None,
        job: Job | None = None,
        fetch: bool = True,
        sent_after: float | None = None,
        exclude: Sequence[str] = (),
        on_submitted: Callable[[Generation], object] | None = None,
        mode: str = "generate",
        on_ready: Callable[[Generation, str | None, list[str]], object] | None = None,
    ) -> Generation:
        """Starts the whole pipeline on the client's engine; returns at once."""
    def _engine_fd(self) -> int: ...
    def _engine_drain(self) -> None: ...
    def job(self, job_id: str, *, timeout: _Timeout = None) -> Job:
        """Re-attach to a job by id (one GET)."""
    def list_jobs(
        self,
        *,
        page_size: int | None = 0,
        pagination_token: str | None = None,
        status: str | None = None,
        type: str | None = None,
        timeout: _Timeout = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...
    def get_asset(self, asset_id: str, *, timeout: _Timeout = None) -> dict[str, Any]:
        """The asset object as the server sent it."""
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

@final
class Job:
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def progress(self) -> float: ...
    @property
    def done(self) -> bool: ...
    @property
    def asset_ids(self) -> tuple[str, ...]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def hint(self) -> str | None: ...
    @property
    def cost(self) -> float | None: ...
    @property
    def raw(self) -> dict[str, Any]: ...
    def refresh(self, *, timeout: _Timeout = None) -> Job: ...
    def wait(
        self,
        timeout: _Timeout = None,
        *,
        progress: Callable[[Job], object] | bool | None = None,
    ) -> Job:
        """progress: None/False, or a callable taking this job after each poll
        (the glue turns progress=True into its display's callable)."""
    def images(self, *, timeout: _Timeout = None) -> list[_ImageFields]:
        """Each asset's (data, mime_type, asset_id, width, height): the glue
        makes the Images."""
    def download(
        self,
        dest: str | os.PathLike[str] = ".",
        *,
        overwrite: bool = False,
        timeout: _Timeout = None,
        skip: Callable[[str, str], bool] | None = None,
    ) -> list[tuple[str, Path, bool]]:
        """(asset_id, path, fetched) for each asset; skip(asset_id, path), for
        this call, tells a file that is there already (not fetched)."""
    def cancel(self, *, timeout: _Timeout = None) -> None: ...
    def _bind(self, client: Client, /) -> None:
        """The client of a job rebuilt from its state (TypeError for anything
        but a Client; a job bound already keeps its own)."""
    def _state(self) -> tuple[str, str | None, float | None]:
        """(job_id, raw_json, cost): what _rebuild_job takes."""
    def __copy__(self) -> Job: ...
    def __deepcopy__(self, memo: Any, /) -> Job: ...

_ImageFields: TypeAlias = tuple[bytes, str, str, int | None, int | None]

def _rebuild_job(job_id: str, raw_json: str | None = None, cost: float | None = None) -> Job:
    """A Job from its state, bound to no client until Job._bind(client)."""

@final
class Generation:
    """A generation running on the client's engine (made by Client._start)."""

    @property
    def stage(self) -> str: ...
    @property
    def progress(self) -> float: ...
    @property
    def done(self) -> bool: ...
    @property
    def job(self) -> Job | None: ...
    @property
    def error(self) -> BaseException | None: ...
    @property
    def client(self) -> Client: ...
    def result(self, timeout: _Timeout = None) -> Any: ...
    def cancel(self) -> bool: ...
    def add_done_callback(self, fn: Callable[[Generation], object], /) -> None: ...

def wait_first(gens: Sequence[Generation], timeout: _Timeout = None) -> bool: ...
def _release_spare_buffers() -> None: ...
def _at_exit() -> None: ...
