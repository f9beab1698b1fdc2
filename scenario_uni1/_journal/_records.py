"""What the journal records and how a work item is named (no storage here).

Shared by the rules (_claims.py), the stores (_sqlite.py, _postgres.py) and
the engine path (_journal_engine.py).
"""

import hashlib
import json
import sys

from .. import _core

FORMAT = "scenario_uni1.journal"
# 2: submissions.owner (who is sending a row that has no job yet).
VERSION = 2

SENDING = "sending"
SUBMITTED = "submitted"
DONE = "done"
FAILED = "failed"

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

    __slots__ = ("fingerprint", "job_id", "occurrence", "owner", "request", "sent_at", "state")

    def __init__(self, fingerprint, occurrence, request_json, state, sent_at, job_id, owner=None):
        self.fingerprint = fingerprint
        self.occurrence = occurrence
        self.request = json.loads(request_json)
        self.state = state
        self.sent_at = sent_at
        self.job_id = job_id
        # Who is sending it (a row without a job), see _claims: None once released.
        self.owner = owner

    def __repr__(self) -> str:
        return (
            f"<journal entry {self.fingerprint[:12]}#{self.occurrence} {self.state}"
            f" job={self.job_id}>"
        )


ENTRY_COLUMNS = "fingerprint, occurrence, request_json, state, sent_at, job_id, owner"
