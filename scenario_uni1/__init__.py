"""Fast, fault-tolerant client for Scenario's Luma Uni-1 Max image model.

    import scenario_uni1 as uni1
    images = uni1.run("A fantasy landscape", aspect_ratio="16:9")
    images[0].save("landscape.png")

Credentials come from SCENARIO_SDK_API_KEY and SCENARIO_SDK_API_SECRET (or
SCENARIO_SDK_JWT), or from an explicit Client(api_key=..., api_secret=...).
Set SCENARIO_UNI1_LOG=debug (or info) to log to stderr.
"""

# Import cost matters: a CLI or a worker imports this on every start. Loading
# the extension means loading libcurl and the thirty-odd shared libraries it
# links, which alone costs more than the rest of the package together, so
# nothing heavy loads here. The extension (_core) and the glue modules load on
# first use of a name that needs them (module __getattr__ below). The
# extension never calls back into the glue: the glue's types (Client, Job,
# Generation) hold the extension's.
import _thread
import os as _os
import sys as _sys

__version__ = "0.1.0"  # kept equal to _core.__version__ (a test checks)

__all__ = [
    "ASPECT_RATIOS",
    "OUTPUT_FORMATS",
    "APIError",
    "AuthenticationError",
    "BudgetExceededError",
    "Client",
    "ConfigurationError",
    "ConnectionError",
    "Generation",
    "Image",
    "InvalidRequestError",
    "Job",
    "JobCanceledError",
    "JobError",
    "JobFailedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "SubmissionUncertainError",
    "TimeoutError",
    "Uni1Error",
    "__version__",
    "aestimate",
    "as_completed",
    "aupload",
    "default_client",
    "estimate",
    "generate",
    "generate_many",
    "job",
    "run",
    "set_credentials_provider",
    "shared_client",
    "submit",
    "upload",
    "wait",
]

_FROM_CORE = frozenset(
    (
        "ASPECT_RATIOS",
        "OUTPUT_FORMATS",
        "APIError",
        "AuthenticationError",
        "ConfigurationError",
        "ConnectionError",
        "InvalidRequestError",
        "JobCanceledError",
        "JobError",
        "JobFailedError",
        "NotFoundError",
        "PermissionDeniedError",
        "RateLimitError",
        "ServerError",
        "SubmissionUncertainError",
        "TimeoutError",
        "Uni1Error",
    )
)

TYPE_CHECKING = False  # type checkers take the branch below; nothing imports typing
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._client import Client
    from ._core import (
        ASPECT_RATIOS,
        OUTPUT_FORMATS,
        APIError,
        AuthenticationError,
        ConfigurationError,
        ConnectionError,
        InvalidRequestError,
        JobCanceledError,
        JobError,
        JobFailedError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
        ServerError,
        SubmissionUncertainError,
        TimeoutError,
        Uni1Error,
    )
    from ._generation import Generation
    from ._image import Image
    from ._job import Job
    from ._many import AsCompleted, BudgetExceededError, GenerateMany
    from ._workers import set_credentials_provider, shared_client


def __getattr__(name: str):
    if name in _FROM_CORE:
        value = getattr(_load_core(), name)
    elif name == "_core":
        value = _load_core()
    elif name == "Client":
        from ._client import Client as value
    elif name == "Image":
        from ._image import Image as value
    elif name == "Job":
        from ._job import Job as value
    elif name == "Generation":
        from ._generation import Generation as value
    elif name == "BudgetExceededError":
        from ._many import BudgetExceededError as value
    elif name in ("shared_client", "set_credentials_provider"):
        from . import _workers

        value = getattr(_workers, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def _load_core():
    # A dotted __import__ (not `from . import _core`, which would come back
    # here through __getattr__) loads the extension and sets the package
    # attribute.
    __import__(__name__ + "._core")
    return _sys.modules[__name__ + "._core"]


# -- the default client --------------------------------------------------------

_default_lock = _thread.allocate_lock()
_default = None


def default_client() -> "Client":
    """The client used by the module-level functions, built on first use from
    the environment (credentials: set_credentials_provider's, if one is set);
    shared by every thread."""
    global _default
    client = _default
    if client is not None and not client.closed:
        return client
    from ._client import Client
    from ._workers import provided_credentials

    with _default_lock:
        if _default is None or _default.closed:
            key, secret, token = provided_credentials()
            _default = Client(key, secret, bearer_token=token)
        return _default


def _reset_default_client() -> None:
    """Forget (and close) the default client and the clients built for unpickled
    jobs, e.g. after the environment changed."""
    global _default
    with _default_lock:
        client, _default = _default, None
    built = []
    jobs = _sys.modules.get(__name__ + "._job")
    if jobs is not None:
        built = jobs._forget_built_clients()
    for c in [client, *built]:
        if c is not None:
            c.close()


def _pick_client(client: "Client | None") -> "Client":
    return default_client() if client is None else client


# -- module-level functions ------------------------------------------------------


def generate(
    prompt: str,
    *,
    source=None,
    image_refs=(),
    aspect_ratio: "str | None" = None,
    output_format: str = "png",
    web_search: bool = False,
    client: "Client | None" = None,
) -> "Job":
    """Submit a generation; returns the Job at once. See Client.generate."""
    return _pick_client(client).generate(
        prompt,
        source=source,
        image_refs=image_refs,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        web_search=web_search,
    )


def run(
    prompt: str,
    *,
    source=None,
    image_refs=(),
    aspect_ratio: "str | None" = None,
    output_format: str = "png",
    web_search: bool = False,
    timeout: "float | None" = None,
    progress=None,
    client: "Client | None" = None,
) -> "list[Image]":
    """Submit, wait and fetch: a list of Image. See Client.run."""
    return _pick_client(client).run(
        prompt,
        source=source,
        image_refs=image_refs,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        web_search=web_search,
        timeout=timeout,
        progress=progress,
    )


def job(job_id: str, *, client: "Client | None" = None) -> "Job":
    """Re-attach to a job by id (one GET)."""
    return _pick_client(client).job(job_id)


def upload(file, *, client: "Client | None" = None) -> str:
    """Upload an image; returns its asset id. See Client.upload."""
    return _pick_client(client).upload(file)


def estimate(
    prompt: str,
    *,
    source=None,
    image_refs=(),
    aspect_ratio: "str | None" = None,
    output_format: str = "png",
    web_search: bool = False,
    client: "Client | None" = None,
) -> float:
    """The cost in creative units, without running anything. See Client.estimate."""
    return _pick_client(client).estimate(
        prompt,
        source=source,
        image_refs=image_refs,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        web_search=web_search,
    )


def submit(
    prompt: str,
    *,
    source=None,
    image_refs=(),
    aspect_ratio: "str | None" = None,
    output_format: str = "png",
    web_search: bool = False,
    download=None,
    overwrite: bool = False,
    timeout: "float | None" = None,
    client: "Client | None" = None,
) -> "Generation":
    """Start a whole generation on the engine; returns a Generation at once. See Client.submit."""
    return _pick_client(client).submit(
        prompt,
        source=source,
        image_refs=image_refs,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        web_search=web_search,
        download=download,
        overwrite=overwrite,
        timeout=timeout,
    )


def generate_many(
    requests: "Iterable[str | dict]",
    *,
    concurrency: int = 8,
    download=None,
    progress: "bool | None" = None,
    max_cost: "float | None" = None,
    client: "Client | None" = None,
) -> "GenerateMany":
    """Many generations, yielded as each ends. See Client.generate_many."""
    return _pick_client(client).generate_many(
        requests,
        concurrency=concurrency,
        download=download,
        progress=progress,
        max_cost=max_cost,
    )


def as_completed(items, timeout: "float | None" = None) -> "AsCompleted":
    """Jobs and Generations as each ends (for and async for). See Client.as_completed.

    Each item is watched by its own client's engine; no client is needed here.
    """
    from ._many import AsCompleted

    return AsCompleted(items, timeout)


async def aupload(file, *, timeout: "float | None" = None, client: "Client | None" = None) -> str:
    """upload() for asyncio. See Client.aupload."""
    return await _pick_client(client).aupload(file, timeout=timeout)


async def aestimate(
    prompt: str,
    *,
    source=None,
    image_refs=(),
    aspect_ratio: "str | None" = None,
    output_format: str = "png",
    web_search: bool = False,
    client: "Client | None" = None,
) -> float:
    """estimate() for asyncio. See Client.aestimate."""
    return await _pick_client(client).aestimate(
        prompt,
        source=source,
        image_refs=image_refs,
        aspect_ratio=aspect_ratio,
        output_format=output_format,
        web_search=web_search,
    )


def wait(items, timeout: "float | None" = None) -> list:
    """Every Job and Generation once each has ended, in input order. See Client.wait."""
    from ._many import wait as wait_all

    return wait_all(items, timeout)


# -- logging ----------------------------------------------------------------------


def _setup_logging(level_name: str) -> None:
    import logging

    level = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}.get(
        level_name.strip().lower()
    )
    if level is None:
        return
    logger = logging.getLogger("scenario_uni1")
    logger.setLevel(level)
    if not any(getattr(h, "_scenario_uni1", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._scenario_uni1 = True  # type: ignore[attr-defined]
        logger.addHandler(handler)


if _os.environ.get("SCENARIO_UNI1_LOG"):
    _setup_logging(_os.environ["SCENARIO_UNI1_LOG"])
