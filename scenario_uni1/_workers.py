"""Clients for worker processes: one per process and settings, credentials from the process.

A task of a Dask or Ray cluster (or a multiprocessing pool) runs in a worker
process: it gets its arguments by pickle, and a Client cannot be pickled
(connections, credentials). shared_client(...) is what a task calls instead:
the process's client for those settings, built at the first call and reused
by every later task of the process (its connections, engine and journal stay
open between tasks). The credentials come from the worker process itself:
the callable given to set_credentials_provider in that process, else its
environment (SCENARIO_SDK_API_KEY and SCENARIO_SDK_API_SECRET, or
SCENARIO_SDK_JWT). Nothing secret is in a task's pickle, and a worker without
credentials fails the task with ConfigurationError (the worker lives on).

The cache key is the settings (base_url, project_id, journal, every other
Client keyword) and a digest of the credentials, never the credentials: a
provider that hands out new credentials gets a new client.
"""

from __future__ import annotations

import hashlib
import os
import threading

from . import _core

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._client import Client

_CREDENTIAL_NAMES = frozenset(("api_key", "api_secret", "bearer_token"))

_lock = threading.Lock()
_provider: Callable[[], Mapping[str, str]] | None = None
_clients: dict[tuple, Client] = {}


def set_credentials_provider(provider: Callable[[], Mapping[str, str]] | None) -> None:
    """Where the clients of shared_client (and of unpickled jobs) take their credentials.

    provider() returns {"api_key": ..., "api_secret": ...} or {"bearer_token": ...};
    it is called in this process whenever such a client is looked up (cache
    what is slow to fetch), and by default_client(). None goes back to the
    environment. Set it in each
    worker process: a Dask WorkerPlugin's setup, Ray's worker_process_setup_hook,
    a multiprocessing initializer.
    """
    global _provider
    if provider is not None and not callable(provider):
        raise _core.InvalidRequestTypeError(
            f"the credentials provider must be callable, not {type(provider).__name__}"
        )
    with _lock:
        _provider = provider


def credentials() -> tuple[str | None, str | None, str | None]:
    """(api_key, api_secret, bearer_token) of this process: the provider's, else the environment's."""
    from ._client import resolve_credentials

    provider = _provider
    if provider is None:
        return resolve_credentials(None, None, None)
    given = provider()
    try:
        names = set(given)
    except TypeError:
        names = None
    if names is None or not names <= _CREDENTIAL_NAMES:
        raise _core.ConfigurationError(
            "the credentials provider must return a mapping of api_key and api_secret, "
            "or of bearer_token"
        )
    key, secret, token = (given.get(n) for n in ("api_key", "api_secret", "bearer_token"))
    if not (key and secret) and not token:
        raise _core.ConfigurationError(
            "the credentials provider returned no credentials (api_key and api_secret, "
            "or bearer_token)"
        )
    return resolve_credentials(key, secret, token)


def provided_credentials() -> tuple[str | None, str | None, str | None]:
    """The provider's (api_key, api_secret, bearer_token); all None without a
    provider (Client then reads the environment itself)."""
    if _provider is None:
        return None, None, None
    return credentials()


def _identity(key: str | None, secret: str | None, token: str | None) -> str:
    text = "\0".join(x or "" for x in (key, secret, token))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shared_client(
    *,
    base_url: str | None = None,
    project_id: str | None = None,
    journal: str | os.PathLike[str] | None = None,
    **settings: object,
) -> Client:
    """This process's client for these settings, built on first use and then reused.

    settings are Client's other keyword arguments (timeout, max_retries...);
    credentials are not among them (see set_credentials_provider).

    With a journal, each call starts a task on the calling thread: the n-th
    identical request after it is the task's n-th item (see
    Journal.begin_task), so a task run again on this worker re-attaches to
    what its first attempt paid for instead of counting on from the last task.
    """
    from ._client import Client

    given = _CREDENTIAL_NAMES & set(settings)
    if given:
        raise _core.InvalidRequestTypeError(
            f"shared_client takes no credentials ({', '.join(sorted(given))}): they come "
            "from this process (set_credentials_provider, or the environment)"
        )
    key, secret, token = credentials()
    if journal is not None:
        journal = os.fsdecode(journal)
    cache_key = (
        base_url,
        project_id,
        journal,
        tuple(sorted(settings.items())),
        _identity(key, secret, token),
    )
    with _lock:
        client = _clients.get(cache_key)
        if client is None or client.closed:
            client = Client(
                key,
                secret,
                bearer_token=token,
                base_url=base_url,
                project_id=project_id,
                journal=journal,
                **settings,  # type: ignore[arg-type]
            )
            _clients[cache_key] = client
    if client._journal is not None:
        # A task starts: its calls are counted from its first one, so that
        # a retry here, or the pipeline run again on these workers, finds
        # the rows (and jobs) of its first attempt.
        client._journal.begin_task()
    return client


def forget() -> list[Client]:
    """Every shared client, forgotten (the caller closes them)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    return clients


def reset() -> None:
    """Close and forget every shared client (e.g. after the environment changed)."""
    for client in forget():
        client.close()
