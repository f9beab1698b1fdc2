"""A faithful local emulator of Scenario's REST API for Luma Uni-1 Max.

    from scenario_uni1.emulator import Emulator

    with Emulator(job_duration=0.5) as emu:
        client = emu.client()            # scenario_uni1.Client aimed at emu.url
        emu.inject(path=r"^/v1/jobs/", status=503, times=2)
        ...
        assert emu.request_count("POST", r"^/v1/generate/") == 1

It serves two loopback origins, as the real service does: the API (`emu.url`,
base path /v1, Basic or Bearer auth) and a CDN (`emu.cdn_url`) that serves signed,
expiring URLs and never needs credentials. Everything follows
shared/scenario-api.md; where that contract says "unknown", the variant it names
is the one emulated. Choices of our own are listed in EMULATOR_CHOICES below.

Jobs do not run anywhere: a job's status, progress and history are computed from
the clock each time it is read, so ten thousand jobs cost nothing while they wait.
The HTTP server is a small asyncio implementation (see _emulator_http) running on
its own event loop in a background thread, fast enough that benchmarks measure
the client and not the emulator.

Run it alone with `python -m scenario_uni1.emulator --port 8080` (or
`scenario-uni1 emulator --port 8080`); it prints the URL and the credentials and
can be steered over HTTP under /_emulator/ (see `_admin`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email.utils
import hashlib
import hmac
import json
import logging
import random
import re
import string
import threading
import time

from . import http as _http
from . import images as _img

TYPE_CHECKING = False  # type checkers take the branch; nothing more is imported at run time
if TYPE_CHECKING:
    from typing import Any

    from .._client import Client

__all__ = ["MODEL_ID", "Emulator", "Fault", "RecordedRequest", "main", "serve"]

log = logging.getLogger("scenario_uni1.emulator")

MODEL_ID = "model_luma-uni-1-max"
GENERATE_PATH = "/v1/generate/custom/" + MODEL_ID
PROMPT_MAX = 6000
MAX_REFS = 9
MAX_REFS_WITH_SOURCE = 8
MIN_PART_BYTES = 5 * 1024 * 1024
ACTIONS = (
    None,
    "drop_before",
    "drop_after",
    "stall",
    "truncate",
    "redirect",
) + _http.CDN_BODY_ACTIONS
TERMINAL = frozenset(("success", "failure", "canceled"))
CANCEL_REFUSED = "Cannot cancel this type of job. Action not permitted."

EMULATOR_CHOICES = """
Decisions the contract leaves open, as this emulator makes them:
- cost: base_cost (10) + cost_per_reference (2) for each imageRef entry and for
  source; webSearch costs nothing extra; creativeUnitsDiscount is always 0.
- a new job is "queued"; the POST answer always shows it queued with progress 0,
  later GETs follow the clock: queued, warming-up (10% of job_duration),
  in-progress (20%), finalizing (85%), success (100%). A failure comes at 60%, a
  cancellation at 50%. job_duration=0 means the first GET already sees success.
- progress only moves during in-progress, in 12 seeded uneven steps (some flat)
  up to 0.97; finalizing is 0.99 and success 1.0. updatedAt is the latest
  status change or progress step.
- prompt length is counted in code points.
- imageRef given as a bare string is dropped silently; any other non-array type
  is a 400.
- the job's extra field that clients must keep is "modelId".
- listing: pageSize defaults to 50 and is capped at 100; the last page has no
  nextPaginationToken key at all.
- body over max_body_bytes (10 MiB): 413 {"message": "Request Too Long"}, sent
  before the body is read, with Connection: close.
- uploads: "complete" with missing parts is a 400; parts smaller than 5 MiB
  (except the last), a size different from fileSize, or bytes that are not an
  image show up later as status "failed" with errorMessage.
- CDN: 403 Access Denied (CloudFront XML) for an altered, expired or
  revoked signature; 404 NoSuchKey for a validly signed unknown object.
"""

_ALNUM = string.ascii_letters + string.digits
_JSON_CT = ("Content-Type", "application/json; charset=utf-8")
_XML_CT = ("Content-Type", "text/xml")

_OUTCOME_ALIASES = {
    "success": "success",
    "succeeded": "success",
    "failure": "failure",
    "failed": "failure",
    "canceled": "canceled",
    "cancelled": "canceled",
    "stuck": "stuck",
    "in-progress": "stuck",
    "never": "stuck",
}

KNOBS = (
    "job_duration",
    "url_ttl",
    "outputs_per_job",
    "image_long_side",
    "asset_size_bytes",
    "upload_duration",
    "record_requests",
    "max_body_bytes",
    "max_jobs_in_flight",
    "cancellable",
    "base_cost",
    "cost_per_reference",
)


def _iso(ts: float) -> str:
    ms = round(ts * 1000)
    sec, ms = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{ms:03d}Z"


def _json(status: int, obj, headers=None) -> _http.HttpResponse:
    hdrs = [_JSON_CT]
    if headers:
        hdrs.extend(headers)
    return _http.HttpResponse(status, json.dumps(obj, separators=(",", ":")).encode(), hdrs)


def _copy(obj):
    """A deep copy of JSON data, so that callers cannot change the emulator's state."""
    return json.loads(json.dumps(obj))


def _cf_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64: + becomes -, = becomes _, / becomes ~."""
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def _cf_unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")), validate=True)


def _cdn_error(status: int, code: str, message: str) -> _http.HttpResponse:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return _http.HttpResponse(status, body, [_XML_CT, ("Server", "CloudFront")])


# ============================================================================ records


class RecordedRequest:
    """One request as the emulator received it."""

    __slots__ = ("body", "fault", "headers", "method", "origin", "path", "query", "time")

    def __init__(self, origin, method, path, query, headers, body, t, fault):
        self.origin = origin  # "api", "cdn" or "cdn2" (the redirect target)
        self.method = method
        self.path = path
        self.query = query  # dict of the query string (last value wins)
        self.headers = headers  # dict, lower-case names
        self.body = body  # bytes (empty for drop_before: never read)
        self.time = t  # time.time() when the request was complete
        self.fault = fault  # the fault action applied, "respond", or None

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "<RecordedRequest {} {} {}{}>".format(
            self.origin,
            self.method,
            self.path,
            f" fault={self.fault}" if self.fault else "",
        )


class Fault:
    """An injected fault; see Emulator.inject. `hits` counts the requests it took."""

    __slots__ = (
        "_header_regexes",
        "_regex",
        "action",
        "answer_delay",
        "body",
        "create_after",
        "delay",
        "headers",
        "hits",
        "match_headers",
        "method",
        "origin",
        "path",
        "status",
        "times",
    )

    def __init__(
        self,
        method,
        path,
        origin,
        status,
        body,
        headers,
        times,
        delay,
        action,
        create_after=None,
        match_headers=None,
        answer_delay=0.0,
    ):
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS!r}")
        if origin not in ("api", "cdn", "cdn2", "any", None):
            raise ValueError("origin must be 'api', 'cdn', 'cdn2' or 'any'")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for every request)")
        if action is None and status is None and not (delay or answer_delay) and not headers:
            raise ValueError("a fault needs a status, an action, a delay or headers")
        if (action == "redirect" or action in _http.CDN_BODY_ACTIONS) and origin == "api":
            raise ValueError(f"{action} is a CDN fault")
        if answer_delay and (action is not None or status is not None):
            raise ValueError("answer_delay holds the real handler's answer: no status or action")
        if create_after is not None:
            if not (action == "drop_after" or (action is None and status is not None)):
                raise ValueError("create_after goes with a status (e.g. 504) or drop_after")
            if create_after < 0:
                raise ValueError("create_after must be >= 0")
        self.method = method.upper() if method else None
        self.path = path
        self.origin = None if origin == "any" else origin
        self.status = status
        self.body = body
        self.headers = dict(headers) if headers else None
        self.times = times
        self.delay = float(delay or 0.0)
        self.action = action
        self.hits = 0
        self._regex = re.compile(path) if path else None
        self.create_after = None if create_after is None else float(create_after)
        self.answer_delay = float(answer_delay or 0.0)
        self.match_headers = dict(match_headers) if match_headers else None
        self._header_regexes = [
            (name.lower(), re.compile(pattern)) for name, pattern in (match_headers or {}).items()
        ]

    @property
    def remaining(self):
        return None if self.times is None else self.times - self.hits

    def matches(self, origin, method, path, headers=None) -> bool:
        if self.origin is not None and self.origin != origin:
            return False
        if self.method is not None and self.method != method:
            return False
        for name, regex in self._header_regexes:
            value = (headers or {}).get(name)
            if value is None or regex.search(value) is None:
                return False
        return self._regex is None or self._regex.search(path) is not None

    def as_dict(self):
        return {
            "method": self.method,
            "path": self.path,
            "origin": self.origin or "any",
            "status": self.status,
            "times": self.times,
            "delay": self.delay,
            "action": self.action,
            "create_after": self.create_after,
            "answer_delay": self.answer_delay,
            "match_headers": self.match_headers,
            "hits": self.hits,
        }

    def __repr__(self):
        return "<Fault {}>".format(
            " ".join("{}={!r}".format(*kv) for kv in self.as_dict().items() if kv[1])
        )


# ============================================================================ state


class _Job:
    __slots__ = (
        "asset_ids",
        "cost",
        "created",
        "duration",
        "encoded",
        "error",
        "final",
        "fmt",
        "height",
        "hint",
        "id",
        "input",
        "outcome",
        "outputs",
        "project_id",
        "schedule",
        "seed",
        "seq",
        "ticks",
        "width",
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        self.asset_ids = None
        self.final = None  # the JSON dict, kept once terminal
        self.encoded = None  # (state key, encoded GET answer)


class _Asset:
    __slots__ = (
        "_size",
        "conversions",
        "created",
        "data",
        "fmt",
        "height",
        "id",
        "job_id",
        "name",
        "pad_to",
        "project_id",
        "seed",
        "source",
        "width",
    )

    def __init__(self, **kw):
        self.data = None
        self.seed = 0
        self.pad_to = None
        self.job_id = None
        self.conversions = {}
        self._size = None
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def mime(self):
        return _img.MIME_BY_FORMAT.get(self.fmt, "application/octet-stream")

    @property
    def ext(self):
        return _img.EXT_BY_FORMAT.get(self.fmt, self.fmt)

    def body(self):
        if self.data is not None:
            return _img.Body([self.data])
        return _img.generated_image(self.width, self.height, self.fmt, self.seed, self.pad_to)

    @property
    def size(self):
        if self._size is None:
            self._size = len(self.body())
        return self._size


class _Upload:
    __slots__ = (
        "asset_id",
        "completed",
        "content_type",
        "created",
        "duration",
        "error",
        "file_name",
        "file_size",
        "id",
        "kind",
        "part_data",
        "part_urls",
        "parts",
        "project_id",
        "result",
    )

    def __init__(self, **kw):
        self.completed = None
        self.part_data = {}
        self.error = None
        self.asset_id = None
        self.result = None
        for k, v in kw.items():
            setattr(self, k, v)


class _Site:
    """One origin (api, cdn, cdn2): the glue between the HTTP layer and the emulator."""

    def __init__(self, emulator, origin):
        self.emulator = emulator
        self.origin = origin
        self.connections = set()

    def on_headers(self, req):
        return self.emulator._on_headers(self, req)

    def handle(self, req):
        return self.emulator._handle(self, req)

    def handle_late(self, req):
        """Process a request whose answer was already given (a fault's create_after)."""
        try:
            self.emulator._handle(self, req)
        except Exception:
            log.exception("emulator late handler failed for %s %s", req.method, req.path)

    def record(self, req):
        with self.emulator._lock:
            self.emulator._record(req)

    def fault_response(self, req, fault):
        return self.emulator._fault_response(self, req, fault)

    def redirect_response(self, req):
        return self.emulator._redirect_response(req)


# ============================================================================ emulator


class Emulator:
    """The local Scenario API. Start it with `with Emulator() as emu:` or start()/stop().

    Knobs (attributes, also constructor keywords; change them at any time, a job
    keeps the values it was created with):
      job_duration (s, 2.0; 0 = success on the first GET), url_ttl (s, 86400),
      outputs_per_job (1), image_long_side (256 px), asset_size_bytes (None: pad
      generated images to this exact size), upload_duration (s, 0.3),
      record_requests (True), max_body_bytes (10 MiB), max_jobs_in_flight (None:
      no 429), cancellable (False: custom jobs refuse cancel, as live),
      base_cost (10), cost_per_reference (2).

    seed (constructor only): None (the default) draws job, asset and upload ids
    and the images' patterns at random, so ids never repeat across runs (files
    named after them do not collide); an int makes a run reproducible.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_port: int = 0,
        api_key: str = "emu-key",
        api_secret: str = "emu-secret",
        bearer_token: str | None = None,
        job_duration: float = 2.0,
        url_ttl: float = 86400,
        seed: int | None = None,
        ssl_context=None,
        cdn_ssl_context=None,
        outputs_per_job: int = 1,
        image_long_side: int = 256,
        asset_size_bytes: int | None = None,
        upload_duration: float = 0.3,
        record_requests: bool = True,
        max_recorded_requests: int | None = None,
        max_body_bytes: int = 10 * 1024 * 1024,
        max_jobs_in_flight: int | None = None,
        cancellable: bool = False,
        base_cost: float = 10,
        cost_per_reference: float = 2,
    ):
        self.host = host
        self._port_wanted = port
        self._cdn_port_wanted = cdn_port
        self._credentials = (api_key, api_secret, bearer_token)
        self._auth_ok: frozenset[str] = frozenset()
        self._refresh_auth()
        self.seed = seed
        self.ssl_context = ssl_context
        self.cdn_ssl_context = cdn_ssl_context
        self.job_duration = job_duration
        self.url_ttl = url_ttl
        self.outputs_per_job = outputs_per_job
        self.image_long_side = image_long_side
        self.asset_size_bytes = asset_size_bytes
        self.upload_duration = upload_duration
        self.record_requests = record_requests
        self.max_body_bytes = max_body_bytes
        self.max_jobs_in_flight = max_jobs_in_flight
        self.cancellable = cancellable
        self.base_cost = base_cost
        self.cost_per_reference = cost_per_reference
        self._initial_knobs = {k: getattr(self, k) for k in KNOBS}
        self._max_recorded = max_recorded_requests

        self._lock = threading.RLock()
        self._life_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._seed_cursor = self._rng.getrandbits(32)
        self._url_secret = hashlib.sha256(b"uni1-emulator-cdn:%r:%d" % (seed, id(self))).digest()
        self._key_generation = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list = []
        self._sites: dict = {}
        self.port = None
        self.cdn_port = None
        self.cdn2_port = None
        self._clear_state()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def __repr__(self):
        state = f"running at {self.url}" if self._thread else "stopped"
        return f"<Emulator {state}, {len(self._job_list)} jobs>"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Emulator:
        """Open the origins and serve from a background thread. Idempotent."""
        with self._life_lock:
            if self._thread is not None:
                return self
            ready = threading.Event()
            box: dict = {}
            thread = threading.Thread(
                target=self._thread_main, args=(ready, box), name="uni1-emulator", daemon=True
            )
            thread.start()
            ready.wait()
            if "error" in box:
                thread.join()
                raise box["error"]
            self._thread = thread
            return self

    def stop(self) -> None:
        """Close every connection and listening socket and join the thread. Idempotent."""
        with self._life_lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None:
                return
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            self._thread = None
            self._loop = None

    def _thread_main(self, ready, box):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001 - re-raised by start()
            box["error"] = exc
            loop.run_until_complete(self._close())
            loop.close()
            ready.set()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._close())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self):
        loop = asyncio.get_running_loop()
        plan = (
            ("api", self._port_wanted, self.ssl_context),
            ("cdn", self._cdn_port_wanted, self.cdn_ssl_context),
            ("cdn2", 0, self.cdn_ssl_context),
        )
        for origin, port, ctx in plan:
            site = _Site(self, origin)
            server = await loop.create_server(
                lambda site=site: _http.HttpConnection(site),
                self.host,
                port,
                ssl=ctx,
                backlog=1024,
                reuse_address=True,
            )
            self._servers.append(server)
            self._sites[origin] = site
            bound = server.sockets[0].getsockname()[1]
            setattr(self, {"api": "port", "cdn": "cdn_port", "cdn2": "cdn2_port"}[origin], bound)

    async def _close(self):
        for server in self._servers:
            server.close()
        for site in self._sites.values():
            for conn in list(site.connections):
                conn.abort()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(3):  # let connection_lost callbacks close the sockets
            await asyncio.sleep(0)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        self._sites = {}

    # ------------------------------------------------------------------ addresses
    def _origin(self, scheme_ctx, port):
        scheme = "https" if scheme_ctx is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{port}"

    @property
    def origin_url(self) -> str:
        """The API origin without the base path, e.g. http://127.0.0.1:PORT."""
        return self._origin(self.ssl_context, self.port)

    @property
    def url(self) -> str:
        """The API base URL, e.g. http://127.0.0.1:PORT/v1."""
        return self.origin_url + "/v1"

    @property
    def cdn_url(self) -> str:
        return self._origin(self.cdn_ssl_context, self.cdn_port)

    @property
    def cdn2_url(self) -> str:
        """The second CDN origin that the "redirect" fault sends clients to."""
        return self._origin(self.cdn_ssl_context, self.cdn2_port)

    @property
    def admin_url(self) -> str:
        return self.origin_url + "/_emulator"

    def client(self, **kw: Any) -> Client:
        """A scenario_uni1.Client aimed at this emulator (extra keywords pass through)."""
        from scenario_uni1 import Client

        kw.setdefault("api_key", self.api_key)
        kw.setdefault("api_secret", self.api_secret)
        kw.setdefault("base_url", self.url)
        return Client(**kw)

    def env(self) -> dict:
        """Environment variables that point the SDKs at this emulator."""
        return {
            "SCENARIO_BASE_URL": self.url,
            "SCENARIO_SDK_API_KEY": self.api_key,
            "SCENARIO_SDK_API_SECRET": self.api_secret,
        }

    # ------------------------------------------------------------------ test controls
    # Credentials may be changed on a running emulator; the set of accepted
    # Authorization values is rebuilt on every change.
    @property
    def api_key(self) -> str:
        return self._credentials[0]

    @api_key.setter
    def api_key(self, value: str) -> None:
        self._credentials = (value, *self._credentials[1:])
        self._refresh_auth()

    @property
    def api_secret(self) -> str:
        return self._credentials[1]

    @api_secret.setter
    def api_secret(self, value: str) -> None:
        self._credentials = (self._credentials[0], value, self._credentials[2])
        self._refresh_auth()

    @property
    def bearer_token(self) -> str | None:
        return self._credentials[2]

    @bearer_token.setter
    def bearer_token(self, value: str | None) -> None:
        self._credentials = (*self._credentials[:2], value)
        self._refresh_auth()

    def _refresh_auth(self):
        key, secret, token = self._credentials
        ok = {"Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}
        if token:
            ok.add("Bearer " + token)
        self._auth_ok = frozenset(ok)

    def _clear_state(self):
        with self._lock:
            self._jobs = {}
            self._job_list = []
            self._assets = {}
            self._uploads = {}
            self._faults = []
            self._outcomes = collections.deque()
            self._requests = collections.deque(maxlen=self._max_recorded)
            self._counts = collections.Counter()
            self._jobs_created = 0
            self._cdn_auth_seen = 0
            self._offset = 0.0
            self._inflight = []

    def reset(self) -> None:
        """Forget all jobs, assets, uploads, requests, faults and pending outcomes, and
        put every knob back to its constructor value. Issued URLs are revoked."""
        with self._lock:
            self._clear_state()
            for k, v in self._initial_knobs.items():
                setattr(self, k, v)
            self._key_generation += 1

    def inject(
        self,
        method: str | None = None,
        path: str | None = None,
        origin: str = "api",
        status: int | None = None,
        body=None,
        headers: dict | None = None,
        times: int | None = 1,
        delay: float = 0.0,
        action: str | None = None,
        create_after: float | None = None,
        match_headers: dict | None = None,
        answer_delay: float = 0.0,
    ) -> Fault:
        """Make the next `times` matching requests misbehave (times=None: all of them).

        Matching: `method` (None = any), `path` (a regex searched in the path, no
        query), `origin` ("api", "cdn", "cdn2" or "any"). The first registered
        matching fault wins. Admin requests (/_emulator/) are never faulted.

        Without `action`: after `delay` seconds, answer `status` with `body` (a dict
        or list is sent as JSON, str as text, bytes as is; None: a default body for
        the status) and `headers`. With status=None the real handler answers, after
        the delay, with `headers` added.

        Actions: "drop_before" closes the connection as soon as the request head
        arrives, nothing is processed; "drop_after" processes the request for real
        (a POST creates its job) and closes without answering; "stall" sends the
        head and part of the body (half, at most 1 MiB) and then nothing until the
        client goes away; "truncate" sends the head with the full Content-Length,
        half of the body and closes; "redirect" (CDN) answers 302 to the same URL
        on the second CDN origin (cdn2_url).

        CDN actions that frame a wrong body as complete (a GET of an asset):
        "short_close" sends half the body with no Content-Length and closes (an
        HTTP/1.0-style close-delimited body); "short_chunked" sends half the
        body chunked, then a proper last chunk; "endless" sends the body with no
        Content-Length, then zero bytes until the client goes away;
        "ignore_range" answers 200 with the whole body whatever Range asks;
        "range_wrong_start" answers a Range request 206 with the whole body and
        "Content-Range: bytes 0-N/N"; "range_wrong_total" answers the range
        asked for with a total 1000 bytes too large; "range_extra" sends the
        range asked for, then 1000 more bytes, close-delimited. A 200 with an
        HTML error page needs no action: status=200, body="<html>...",
        headers={"Content-Type": "text/html"}.

        `match_headers` ({name: regex}) narrows the match to requests whose
        headers match every regex (searched in the value), e.g.
        {"user-agent": "^client-a$"} to fault one client's requests only.

        `create_after` (seconds) is a backend that goes on after its gateway gave
        up: with a `status` (e.g. 504) the answer goes out at once, with
        "drop_after" the connection is reset at once, and the request is
        processed for real `create_after` seconds later (a POST creates its job
        then, dated then: createdAt is when the backend made the record). The
        late answer goes nowhere.

        `answer_delay` (seconds, no status or action) is the opposite: the request
        is processed at once (a POST's job exists from then on) and its answer
        held that long, as a slow way back would.
        """
        fault = Fault(
            method,
            path,
            origin,
            status,
            body,
            headers,
            times,
            delay,
            action,
            create_after=create_after,
            match_headers=match_headers,
            answer_delay=answer_delay,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = []

    @property
    def faults(self) -> list:
        with self._lock:
            return list(self._faults)

    def next_job_outcome(
        self,
        status: str = "failure",
        error: str | None = None,
        hint: str | None = None,
        times: int = 1,
    ) -> None:
        """Decide how the next `times` created jobs end.

        status: "success", "failure", "canceled", or "stuck" (stays in-progress
        forever; "in-progress" and "never" are synonyms). A failure carries `error`
        and `hint` in metadata (defaults provided).
        """
        outcome = _OUTCOME_ALIASES.get(status)
        if outcome is None:
            raise ValueError("status must be success, failure, canceled or stuck")
        if outcome == "failure":
            error = error or "The model could not generate an image for this request."
            hint = hint or "Try again, or rephrase the prompt."
        elif outcome == "canceled":
            error = error or "The job was canceled."
        with self._lock:
            for _ in range(times):
                self._outcomes.append((outcome, error, hint))

    def clear_outcomes(self) -> None:
        with self._lock:
            self._outcomes.clear()

    def expire_urls(self) -> None:
        """Make every signed URL issued so far (CDN downloads, upload parts) invalid now."""
        with self._lock:
            self._key_generation += 1

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (jobs progress, URLs expire)."""
        with self._lock:
            self._offset += seconds

    def now(self) -> float:
        return time.time() + self._offset

    # ------------------------------------------------------------------ observation
    @property
    def requests(self) -> list:
        """Every request received (admin ones excepted), oldest first."""
        with self._lock:
            return list(self._requests)

    def request_count(self, method=None, path=None, origin=None) -> int:
        """How many recorded requests match (path is a regex searched in the path)."""
        regex = re.compile(path) if path else None
        method = method.upper() if method else None
        n = 0
        for r in self.requests:
            if origin is not None and r.origin != origin:
                continue
            if method is not None and r.method != method:
                continue
            if regex is not None and not regex.search(r.path):
                continue
            n += 1
        return n

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def jobs_created(self) -> int:
        """Jobs really created (dry runs excluded; a dropped-after POST included)."""
        return self._jobs_created

    @property
    def jobs(self) -> dict:
        """job id -> the job's JSON as a GET would show it now."""
        with self._lock:
            now = self.now()
            return {j.id: _copy(self._job_json(j, now)) for j in self._job_list}

    def job(self, job_id: str) -> dict:
        """One job's JSON as a GET would show it now (KeyError if unknown)."""
        with self._lock:
            return _copy(self._job_json(self._jobs[job_id], self.now()))

    @property
    def assets(self) -> dict:
        with self._lock:
            return {a.id: self._asset_json(a) for a in self._assets.values()}

    @property
    def uploads(self) -> dict:
        with self._lock:
            now = self.now()
            return {u.id: self._upload_json(u, now) for u in self._uploads.values()}

    @property
    def cdn_authorization_seen(self) -> int:
        """How many CDN requests carried an Authorization header (should stay 0)."""
        return self._cdn_auth_seen

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests": dict(self._counts),
                "requests_total": sum(self._counts.values()),
                "jobs_created": self._jobs_created,
                "jobs": len(self._job_list),
                "assets": len(self._assets),
                "uploads": len(self._uploads),
                "faults": [f.as_dict() for f in self._faults],
                "pending_outcomes": len(self._outcomes),
                "cdn_authorization_seen": self._cdn_auth_seen,
                "knobs": {k: getattr(self, k) for k in KNOBS},
            }

    def add_asset(self, data: bytes, name: str = "asset.png") -> str:
        """Store image bytes as an uploaded asset, as POST /v1/assets would; returns its id."""
        info = _img.sniff_image(data)
        if info is None:
            raise ValueError("not an image the emulator can read")
        with self._lock:
            return self._new_asset(info, data, name, "uploaded", None).id

    # ================================================================== request path
    def _new_id(self, prefix):
        rng = self._rng
        return prefix + "".join(rng.choice(_ALNUM) for _ in range(24))

    def _next_job_seed(self):
        # Consecutive seeds from a random start: jobs in a row never share one
        # of the _img.SEED_VARIANTS image patterns (tests compare them), and a
        # seeded emulator still repeats itself exactly.
        seed = self._seed_cursor
        self._seed_cursor = (seed + max(int(self.outputs_per_job), 1)) & 0xFFFFFFFF
        return seed

    def _record(self, req):
        path = req.path
        if path.startswith("/_emulator/"):
            return
        self._counts[req.origin] += 1
        if req.origin != "api" and "authorization" in req.headers:
            self._cdn_auth_seen += 1
        if self.record_requests:
            fault = req.fault
            label = None
            if fault is not None:
                label = fault.action or ("respond" if fault.status is not None else "delay")
            self._requests.append(
                RecordedRequest(
                    req.origin,
                    req.method,
                    path,
                    req.query if req.query_string else {},
                    req.headers,
                    req.body,
                    req.time,
                    label,
                )
            )

    def _on_headers(self, site, req):
        if req.path.startswith("/_emulator/"):
            return None
        if self._faults:
            with self._lock:
                for fault in self._faults:
                    if fault.matches(req.origin, req.method, req.path, req.headers):
                        fault.hits += 1
                        if fault.times is not None and fault.hits >= fault.times:
                            self._faults.remove(fault)
                        req.fault = fault
                        break
            if req.fault is not None and req.fault.action == "drop_before":
                with self._lock:
                    self._record(req)
                return "drop"
        if req.origin == "api" and req.content_length > self.max_body_bytes:
            with self._lock:
                self._record(req)
            return _json(413, {"message": "Request Too Long"})
        return None

    def _handle(self, site, req):
        with self._lock:
            if req.path.startswith("/_emulator/"):
                return self._admin(req)
            if site.origin == "api":
                return self._api(req)
            return self._cdn(req)

    def _fault_response(self, site, req, fault):
        status = fault.status
        body = fault.body
        headers = list(fault.headers.items()) if fault.headers else []
        if body is None:
            phrase = _http.reason_phrase(status)
            if site.origin == "api":
                body = {"reason": phrase}
            else:
                return _http.HttpResponse(
                    status,
                    _cdn_error(status, phrase.replace(" ", ""), phrase).body,
                    [_XML_CT] + headers,
                )
        if isinstance(body, (dict, list)):
            return _json(status, body, headers)
        if isinstance(body, str):
            body = body.encode()
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.insert(0, ("Content-Type", "text/plain; charset=utf-8"))
        return _http.HttpResponse(status, bytes(body), headers)

    def _redirect_response(self, req):
        target = req.path + ("?" + req.query_string if req.query_string else "")
        return _http.HttpResponse(302, b"", [("Location", self.cdn2_url + target)])

    # ------------------------------------------------------------------ API origin
    def _api(self, req):
        path = req.path
        if not path.startswith("/v1/"):
            return _json(404, {"message": "Not Found"})
        auth = req.headers.get("authorization")
        if auth not in self._auth_ok and not self._auth_slow(auth):
            return _json(401, {"reason": "Unauthorized"})
        parts = path.split("/")  # ["", "v1", resource, ...]
        n = len(parts)
        resource = parts[2]
        method = req.method
        if resource == "jobs":
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_job(parts[3])
                return self._method_not_allowed()
            if n == 3 or (n == 4 and not parts[3]):
                if method in ("GET", "HEAD"):
                    return self._list_jobs(req)
                return self._method_not_allowed()
            if n == 5 and parts[4] == "action":
                if method == "POST":
                    return self._job_action(parts[3], req)
                return self._method_not_allowed()
        elif resource == "generate":
            if path == GENERATE_PATH:
                if method == "POST":
                    return self._generate(req)
                return self._method_not_allowed()
            return _json(404, {"message": "Model not found: {}".format("/".join(parts[3:]))})
        elif resource == "assets":
            if n == 3:
                if method == "POST":
                    return self._upload_small(req)
                return self._method_not_allowed()
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_asset(parts[3])
                return self._method_not_allowed()
            if n == 5 and parts[4] == "download":
                if method == "POST":
                    return self._asset_download(parts[3], req)
                return self._method_not_allowed()
        elif resource == "uploads":
            if n == 3:
                if method == "POST":
                    return self._create_upload(req)
                return self._method_not_allowed()
            if n == 4 and parts[3]:
                if method in ("GET", "HEAD"):
                    return self._get_upload(parts[3])
                return self._method_not_allowed()
            if n == 5 and parts[4] == "action":
                if method == "POST":
                    return self._upload_action(parts[3], req)
                return self._method_not_allowed()
        return _json(404, {"message": "Not Found"})

    def _auth_slow(self, auth):
        """Accept a case-different scheme or base64 variant of the right credentials."""
        if not auth:
            return False
        scheme, _, value = auth.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            return bool(self.bearer_token) and hmac.compare_digest(value, self.bearer_token)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(decoded, f"{self.api_key}:{self.api_secret}")
        return False

    @staticmethod
    def _method_not_allowed():
        return _json(405, {"message": "Method Not Allowed"})

    @staticmethod
    def _read_json(req):
        """The JSON object body, or an error response."""
        try:
            body = json.loads(req.body) if req.body else None
        except (ValueError, UnicodeDecodeError):
            return None, _json(400, {"reason": "Invalid JSON in request body"})
        if not isinstance(body, dict):
            return None, _json(400, {"reason": "Request body must be a JSON object"})
        return body, None

    def _project(self, req):
        if req.query_string:
            return req.query.get("projectId") or None
        return None

    # ------------------------------------------------------------------ generate
    def _generate(self, req):
        body, err = self._read_json(req)
        if err:
            return err
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or len(prompt) == 0:
            return _json(400, {"reason": "prompt is required and must be a non-empty string"})
        if len(prompt) > PROMPT_MAX:
            return _json(
                400,
                {"reason": f"prompt must be at most {PROMPT_MAX} characters (got {len(prompt)})"},
            )
        source = body.get("source")
        if source is not None and not isinstance(source, str):
            return _json(400, {"reason": "source must be an asset id"})
        raw_refs = body.get("imageRef")
        if raw_refs is None or isinstance(raw_refs, str):
            refs = []  # the live server drops a bare string without a word
        elif isinstance(raw_refs, list):
            if not all(isinstance(r, str) for r in raw_refs):
                return _json(400, {"reason": "imageRef must be an array of asset ids"})
            refs = list(raw_refs)
        else:
            return _json(400, {"reason": "imageRef must be an array of asset ids"})
        limit = MAX_REFS_WITH_SOURCE if source else MAX_REFS
        if len(refs) > limit:
            return _json(
                400,
                {
                    "reason": f"imageRef accepts at most {limit} images"
                    + (" when source is set" if source else "")
                },
            )
        aspect = body.get("aspectRatio")
        if aspect is not None and aspect not in _img.ASPECT_RATIOS:
            return _json(
                400,
                {"reason": "aspectRatio must be one of {}".format(", ".join(_img.ASPECT_RATIOS))},
            )
        fmt = body.get("outputFormat")
        if fmt is None:
            fmt = "png"
        elif fmt not in ("png", "jpeg"):
            return _json(400, {"reason": "outputFormat must be png or jpeg"})
        web = body.get("webSearch")
        if web is not None and not isinstance(web, bool):
            return _json(400, {"reason": "webSearch must be a boolean"})
        for asset_id in ([source] if source else []) + refs:
            if asset_id not in self._assets:
                return _json(404, {"reason": f"Asset not found: {asset_id}"})

        n_refs = len(refs) + (1 if source else 0)
        cost = self.base_cost + self.cost_per_reference * n_refs
        if (req.query.get("dryRun", "") if req.query_string else "").lower() in ("true", "1"):
            return _json(
                269,
                {
                    "creativeUnitsCost": cost,
                    "creativeUnitsDiscount": 0,
                    "costDetails": {
                        "modelId": MODEL_ID,
                        "baseCost": self.base_cost,
                        "referenceImages": n_refs,
                        "referenceCost": self.cost_per_reference * n_refs,
                        "webSearchCost": 0,
                        "total": cost,
                    },
                },
            )

        now = self.now()
        limit = self.max_jobs_in_flight
        if limit is not None:
            self._inflight = [j for j in self._inflight if self._state(j, now)[0] not in TERMINAL]
            if len(self._inflight) >= limit:
                return _json(
                    429,
                    {
                        "reason": "Too many jobs in progress",
                        "details": {"actionName": "generate", "actionLimit": limit},
                    },
                )

        if source and aspect is None:
            src = self._assets[source]
            w, h = _img.dimensions_for_size(src.width or 1, src.height or 1, self.image_long_side)
        else:
            w, h = _img.dimensions_for_ratio(aspect or "3:2", self.image_long_side)
        if self._outcomes:
            outcome, error, hint = self._outcomes.popleft()
        else:
            outcome, error, hint = "success", None, None
        duration = max(float(self.job_duration), 0.0)
        seed = self._next_job_seed()
        job = _Job(
            id=self._new_id("job_"),
            seq=len(self._job_list) + 1,
            created=now,
            duration=duration,
            seed=seed,
            input=body,
            cost=cost,
            outcome=outcome,
            error=error,
            hint=hint,
            width=w,
            height=h,
            fmt=fmt,
            outputs=max(int(self.outputs_per_job), 0),
            project_id=self._project(req),
            schedule=_schedule(outcome, duration),
            ticks=_ticks(seed, duration),
        )
        self._jobs[job.id] = job
        self._job_list.append(job)
        self._jobs_created += 1
        if limit is not None:
            self._inflight.append(job)
        return _json(
            200,
            {
                "job": self._job_json(job, now, initial=True),
                "creativeUnitsCost": cost,
                "creativeUnitsDiscount": 0,
            },
        )

    # ------------------------------------------------------------------ jobs
    def _state(self, job, now):
        """(status, progress, index of the last reached schedule entry, updated offset)."""
        t = now - job.created
        sched = job.schedule
        i = 0
        for k in range(1, len(sched)):
            if sched[k][0] <= t:
                i = k
            else:
                break
        status = sched[i][1]
        updated = sched[i][0]
        if status in ("queued", "warming-up"):
            progress = 0.0
        elif status == "finalizing":
            progress = 0.99
        elif status == "success":
            progress = 1.0
        else:  # in-progress, failure, canceled: the last progress step before t
            horizon = t if status == "in-progress" else sched[i][0]
            progress = 0.0
            for off, value in job.ticks:
                if off <= horizon:
                    progress = value
                    if status == "in-progress":
                        updated = max(updated, off)
                else:
                    break
        return status, progress, i, updated

    def _job_json(self, job, now, initial=False, state=None):
        if job.final is not None:
            return job.final
        if initial:
            status, progress, i, updated = "queued", 0.0, 0, 0.0
        else:
            status, progress, i, updated = state or self._state(job, now)
        terminal = status in TERMINAL
        if status == "success" and job.asset_ids is None:
            self._materialize(job)
        created = job.created
        history = [{"date": _iso(created + off), "status": st} for off, st in job.schedule[: i + 1]]
        asset_ids = list(job.asset_ids) if status == "success" else []
        output = None
        if status == "success":
            output = {
                "assetIds": asset_ids,
                "outputFormat": job.fmt,
                "width": job.width,
                "height": job.height,
            }
        data = {
            "jobId": job.id,
            "jobType": "custom",
            "status": status,
            "progress": progress,
            "statusHistory": history,
            "metadata": {
                "assetIds": asset_ids,
                "error": job.error if status in ("failure", "canceled") else None,
                "hint": job.hint if status == "failure" else None,
                "input": job.input,
                "output": output,
            },
            "billing": {"cuCost": job.cost, "cuDiscount": 0, "disableRefund": False},
            "authorId": "user_emulator",
            "ownerId": job.project_id or "proj_emulator",
            "createdAt": _iso(created),
            "updatedAt": _iso(created + updated),
            "modelId": MODEL_ID,
        }
        if terminal and not initial:
            job.final = data
        return data

    def _materialize(self, job):
        """Create the job's output assets, the first time it is seen successful."""
        ids = []
        done = job.created + job.duration
        for k in range(job.outputs):
            asset = _Asset(
                id=self._new_id("asset_"),
                fmt=job.fmt,
                width=job.width,
                height=job.height,
                seed=job.seed + k,
                name=f"{job.id}-{k}.{_img.EXT_BY_FORMAT.get(job.fmt, job.fmt)}",
                created=done,
                job_id=job.id,
                source="generated",
                project_id=job.project_id,
                pad_to=self.asset_size_bytes,
            )
            self._assets[asset.id] = asset
            ids.append(asset.id)
        job.asset_ids = ids

    def _get_job(self, job_id):
        job = self._jobs.get(job_id)
        if job is None:
            return _json(404, {"reason": f"Job not found: {job_id}"})
        # Polling is the hot path: the encoded answer is kept until the job changes.
        if job.final is not None:
            key = "final"
            state = None
        else:
            state = self._state(job, self.now())
            key = (state[2], state[1], state[3])
        cached = job.encoded
        if cached is None or cached[0] != key:
            data = json.dumps({"job": self._job_json(job, 0.0, state=state)}, separators=(",", ":"))
            cached = job.encoded = (key, data.encode())
        return _http.HttpResponse(200, cached[1], [_JSON_CT])

    def _page_token(self, seq):
        mac = hmac.new(self._url_secret, b"page:%d" % seq, hashlib.sha256).hexdigest()[:10]
        return base64.urlsafe_b64encode(b"%d:%s" % (seq, mac.encode())).decode().rstrip("=")

    def _page_start(self, token):
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            seq_text, _mac = raw.split(":")
            seq = int(seq_text)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(self._page_token(seq), token.rstrip("=")):
            return None
        return seq

    def _list_jobs(self, req):
        q = req.query if req.query_string else {}
        size_text = q.get("pageSize") or "50"
        try:
            page_size = int(size_text)
        except ValueError:
            page_size = 0
        if page_size < 1:
            return _json(400, {"reason": "pageSize must be a positive integer"})
        page_size = min(page_size, 100)
        start = len(self._job_list) - 1
        token = q.get("paginationToken")
        if token:
            seq = self._page_start(token)
            if seq is None:
                return _json(400, {"error": "Invalid paginationToken"})
            start = min(seq - 2, start)
        statuses = {s for s in (q.get("status") or "").split(",") if s}
        types = {s for s in (q.get("type") or "").split(",") if s}
        project = q.get("projectId")
        if types and "custom" not in types:
            return _json(200, {"jobs": []})
        now = self.now()
        page = []
        more = False
        for idx in range(start, -1, -1):
            job = self._job_list[idx]
            if project and job.project_id != project:
                continue
            if statuses and self._state(job, now)[0] not in statuses:
                continue
            if len(page) == page_size:
                more = True
                break
            page.append(job)
        result = {"jobs": [self._job_json(j, now) for j in page]}
        if more:
            result["nextPaginationToken"] = self._page_token(page[-1].seq)
        return _json(200, result)

    def _job_action(self, job_id, req):
        job = self._jobs.get(job_id)
        if job is None:
            return _json(404, {"reason": f"Job not found: {job_id}"})
        body, err = self._read_json(req)
        if err:
            return err
        if body.get("action") != "cancel":
            return _json(400, {"reason": "Unknown action: {!r}".format(body.get("action"))})
        if not self.cancellable:
            return _json(400, {"reason": CANCEL_REFUSED})
        now = self.now()
        status, _p, i, _u = self._state(job, now)
        if status in TERMINAL:
            return _json(400, {"reason": f"Job is already {status}"})
        job.schedule = job.schedule[: i + 1] + [(now - job.created, "canceled")]
        job.error = "Canceled by the user."
        return _json(200, {"job": self._job_json(job, now)})

    # ------------------------------------------------------------------ assets
    def _sign(self, path, ttl=None):
        exp = int(self.now() + (self.url_ttl if ttl is None else ttl))
        gen = self._key_generation
        sig = hmac.new(self._url_secret, b"%d\n%s\n%d" % (gen, path.encode(), exp), "sha256")
        policy = {
            "Statement": [
                {
                    "Resource": self.cdn_url + path,
                    "Condition": {"DateLessThan": {"AWS:EpochTime": exp}},
                }
            ]
        }
        encoded_policy = _cf_b64(json.dumps(policy, separators=(",", ":")).encode())
        return (
            f"{self.cdn_url}{path}?Policy={encoded_policy}"
            f"&Signature={_cf_b64(sig.digest())}&Key-Pair-Id=K2EMU{gen}"
        )

    def _check_signature(self, req):
        """None if the CloudFront-style signature is valid now, else a 403 response."""
        q = req.query
        policy, signature, key = q.get("Policy"), q.get("Signature"), q.get("Key-Pair-Id")
        if not (policy and signature and key):
            return _cdn_error(
                403, "MissingKey", "Missing Key-Pair-Id query parameter or cookie value"
            )
        denied = _cdn_error(403, "AccessDenied", "Access denied")
        try:
            doc = json.loads(_cf_unb64(policy))
            exp = int(doc["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"])
            sig = _cf_unb64(signature)
            gen = int(key.rpartition("EMU")[2])
        except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
            return denied
        expected = hmac.new(
            self._url_secret, b"%d\n%s\n%d" % (gen, req.path.encode(), exp), "sha256"
        ).digest()
        if not hmac.compare_digest(sig, expected):
            return denied
        if gen != self._key_generation or self.now() >= exp:
            return denied
        return None

    def _asset_json(self, asset):
        size = asset.size
        path = f"/assets/{asset.id}/original.{asset.ext}"
        meta = {
            "type": "custom" if asset.source == "generated" else "uploaded",
            "kind": "image",
            "name": asset.name,
            "width": asset.width,
            "height": asset.height,
            "size": size,
        }
        if asset.job_id:
            meta["parentJobId"] = asset.job_id
            meta["modelId"] = MODEL_ID
        created = _iso(asset.created)
        return {
            "id": asset.id,
            "url": self._sign(path),
            "mimeType": asset.mime,
            "kind": "image",
            "status": "success",
            "metadata": meta,
            "properties": {"size": size, "width": asset.width, "height": asset.height},
            "source": asset.source,
            "ownerId": asset.project_id or "proj_emulator",
            "authorId": "user_emulator",
            "collectionIds": [],
            "tags": [],
            "privacy": "private",
            "createdAt": created,
            "updatedAt": created,
        }

    def _get_asset(self, asset_id):
        asset = self._assets.get(asset_id)
        if asset is None:
            return _json(404, {"reason": f"Asset not found: {asset_id}"})
        return _json(200, {"asset": self._asset_json(asset)})

    def _new_asset(self, info, data, name, source, project_id):
        fmt, w, h = info
        asset = _Asset(
            id=self._new_id("asset_"),
            fmt=fmt,
            width=w,
            height=h,
            data=data,
            name=name or f"upload.{_img.EXT_BY_FORMAT.get(fmt, fmt)}",
            created=self.now(),
            source=source,
            project_id=project_id,
        )
        self._assets[asset.id] = asset
        return asset

    def _upload_small(self, req):
        body, err = self._read_json(req)
        if err:
            return err
        image = body.get("image")
        if not isinstance(image, str) or not image:
            return _json(400, {"reason": "image is required (a data URL or base64 string)"})
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            return _json(400, {"reason": "name must be a string"})
        payload = image
        if image.startswith("data:"):
            header, comma, payload = image.partition(",")
            if not comma or not header.endswith(";base64"):
                return _json(400, {"reason": "image data URL must be base64 encoded"})
        data = _b64decode(payload)
        if not data:
            return _json(400, {"reason": "image is not valid base64"})
        info = _img.sniff_image(data)
        if info is None:
            return _json(400, {"reason": "Unsupported or corrupt image"})
        asset = self._new_asset(info, data, name, "uploaded", self._project(req))
        return _json(200, {"asset": self._asset_json(asset)})

    def _asset_download(self, asset_id, req):
        asset = self._assets.get(asset_id)
        if asset is None:
            return _json(404, {"reason": f"Asset not found: {asset_id}"})
        body, err = self._read_json(req)
        if err:
            return err
        fmt = body.get("targetFormat")
        if not isinstance(fmt, str):
            return _json(400, {"reason": "targetFormat is required"})
        fmt = fmt.lower()
        fmt = {"jpg": "jpeg", "tif": "tiff"}.get(fmt, fmt)
        if fmt not in ("png", "jpeg", "webp", "gif", "bmp", "tiff", "avif"):
            return _json(400, {"reason": f"Unsupported targetFormat: {fmt}"})
        path = f"/assets/{asset.id}/converted.{_img.EXT_BY_FORMAT.get(fmt, fmt)}"
        return _json(200, {"url": self._sign(path)})

    def _converted(self, asset, fmt):
        body = asset.conversions.get(fmt)
        if body is None:
            if fmt == asset.fmt:
                body = asset.body()
            elif asset.data is None and fmt in ("png", "jpeg"):
                body = _img.generated_image(asset.width, asset.height, fmt, asset.seed)
            else:
                data = _img.convert_image(asset.body().tobytes(), fmt)
                # Without Pillow (or a codec) the original bytes go out as the new type.
                body = _img.Body([data if data is not None else asset.body().tobytes()])
            asset.conversions[fmt] = body
        return body

    # ------------------------------------------------------------------ uploads
    def _create_upload(self, req):
        body, err = self._read_json(req)
        if err:
            return err
        file_name = body.get("fileName")
        if not isinstance(file_name, str) or not file_name:
            return _json(400, {"reason": "fileName is required"})
        parts = body.get("parts", 1)
        if not isinstance(parts, int) or isinstance(parts, bool) or not 1 <= parts <= 10000:
            return _json(400, {"reason": "parts must be an integer between 1 and 10000"})
        file_size = body.get("fileSize")
        if file_size is not None and (
            not isinstance(file_size, int) or isinstance(file_size, bool) or file_size < 0
        ):
            return _json(400, {"reason": "fileSize must be a non-negative integer"})
        kind = body.get("kind", "image")
        if kind != "image":
            return _json(400, {"reason": "kind must be image"})
        now = self.now()
        upload = _Upload(
            id=self._new_id("upload_"),
            file_name=file_name,
            content_type=body.get("contentType"),
            kind=kind,
            parts=parts,
            file_size=file_size,
            created=now,
            project_id=self._project(req),
            duration=max(float(self.upload_duration), 0.0),
        )
        upload.part_urls = [self._presign_part(upload.id, k, now) for k in range(1, parts + 1)]
        self._uploads[upload.id] = upload
        return _json(200, {"upload": self._upload_json(upload, now)})

    def _presign_part(self, upload_id, number, now):
        exp = int(now + 3600)
        path = f"/uploads/{upload_id}/{number}"
        sig = hmac.new(
            self._url_secret, b"put\n%s\n%d" % (path.encode(), exp), hashlib.sha256
        ).hexdigest()
        url = (
            f"{self.cdn_url}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Expires={exp}&X-Amz-Signature={sig}"
        )
        return {"number": number, "url": url, "expires": _iso(exp)}

    def _upload_state(self, upload, now):
        if upload.completed is None:
            return "pending"
        t = now - upload.completed
        d = upload.duration
        ok = upload.error is None
        if not ok:
            return "validating" if t < d / 2 else "failed"
        if t < d / 3:
            return "validating"
        if t < 2 * d / 3:
            return "validated"
        if upload.asset_id is None:
            fmt_info, data = upload.result
            asset = self._new_asset(fmt_info, data, upload.file_name, "uploaded", upload.project_id)
            asset.created = upload.completed + d
            upload.asset_id = asset.id
            upload.result = None
        return "imported"

    def _upload_json(self, upload, now):
        status = self._upload_state(upload, now)
        data = {
            "id": upload.id,
            "status": status,
            "fileName": upload.file_name,
            "contentType": upload.content_type,
            "kind": upload.kind,
            "fileSize": upload.file_size,
            "parts": upload.part_urls if upload.completed is None else [],
            "createdAt": _iso(upload.created),
            "updatedAt": _iso(upload.completed or upload.created),
            "ownerId": upload.project_id or "proj_emulator",
            "authorId": "user_emulator",
        }
        if status == "imported":
            data["entityId"] = upload.asset_id
        if status == "failed":
            data["errorMessage"] = upload.error
        return data

    def _get_upload(self, upload_id):
        upload = self._uploads.get(upload_id)
        if upload is None:
            return _json(404, {"reason": f"Upload not found: {upload_id}"})
        return _json(200, {"upload": self._upload_json(upload, self.now())})

    def _upload_action(self, upload_id, req):
        upload = self._uploads.get(upload_id)
        if upload is None:
            return _json(404, {"reason": f"Upload not found: {upload_id}"})
        body, err = self._read_json(req)
        if err:
            return err
        action = body.get("action")
        if action != "complete":
            return _json(400, {"reason": f"Unknown action: {action!r}"})
        if upload.completed is not None:
            return _json(400, {"reason": "Upload already completed"})
        missing = [k for k in range(1, upload.parts + 1) if k not in upload.part_data]
        if missing:
            return _json(400, {"reason": f"Upload has missing parts: {missing}"})
        sizes = [len(upload.part_data[k]) for k in range(1, upload.parts + 1)]
        data = b"".join(upload.part_data[k] for k in range(1, upload.parts + 1))
        upload.part_data = {}
        small = [k + 1 for k, s in enumerate(sizes[:-1]) if s < MIN_PART_BYTES]
        info = _img.sniff_image(data)
        if small:
            upload.error = f"EntityTooSmall: part {small[0]} is smaller than the 5 MiB minimum"
        elif upload.file_size is not None and upload.file_size != len(data):
            upload.error = (
                f"File size mismatch: expected {upload.file_size} bytes, received {len(data)}"
            )
        elif info is None:
            upload.error = "Unsupported or corrupt image"
        else:
            upload.result = (info, data)
        upload.completed = self.now()
        return _json(200, {"upload": self._upload_json(upload, upload.completed)})

    # ------------------------------------------------------------------ CDN origin
    def _cdn(self, req):
        method = req.method
        path = req.path
        if path.startswith("/uploads/"):
            if method != "PUT":
                return _cdn_error(403, "AccessDenied", "Access Denied")
            return self._put_part(req)
        if method not in ("GET", "HEAD"):
            return _cdn_error(403, "AccessDenied", "Access Denied")
        denied = self._check_signature(req)
        if denied is not None:
            return denied
        parts = path.split("/")  # ["", "assets", id, file]
        asset = self._assets.get(parts[2]) if len(parts) == 4 and parts[1] == "assets" else None
        if asset is None:
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        stem, _, ext = parts[3].partition(".")
        fmt = {"jpg": "jpeg", "tif": "tiff"}.get(ext, ext)
        if stem == "original":
            body, fmt = asset.body(), asset.fmt
        elif stem == "converted":
            body = self._converted(asset, fmt)
        else:
            return _cdn_error(404, "NoSuchKey", "The specified key does not exist.")
        total = len(body)
        headers = [
            ("Content-Type", _img.MIME_BY_FORMAT.get(fmt, "application/octet-stream")),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{asset.id}-{fmt}-{total}"'),
            ("Last-Modified", email.utils.formatdate(asset.created, usegmt=True)),
            ("Cache-Control", "private, max-age=86400"),
            ("X-Cache", "Miss from cloudfront"),
        ]
        rng = req.headers.get("range")
        if rng:
            span = _parse_range(rng, total)
            if span == "unsatisfiable":
                resp = _cdn_error(416, "InvalidRange", "The requested range is not satisfiable")
                resp.headers.append(("Content-Range", f"bytes */{total}"))
                return resp
            if span is not None:
                start, end = span
                headers.append(("Content-Range", f"bytes {start}-{end - 1}/{total}"))
                return _http.HttpResponse(206, body.slice(start, end), headers)
        return _http.HttpResponse(200, body, headers)

    def _put_part(self, req):
        parts = req.path.split("/")  # ["", "uploads", id, number]
        q = req.query if req.query_string else {}
        try:
            exp = int(q.get("X-Amz-Expires", ""))
            number = int(parts[3])
        except (ValueError, IndexError):
            return _cdn_error(403, "AccessDenied", "Access Denied")
        expected = hmac.new(
            self._url_secret, b"put\n%s\n%d" % (req.path.encode(), exp), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(q.get("X-Amz-Signature", ""), expected):
            return _cdn_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if self.now() >= exp:
            return _cdn_error(403, "AccessDenied", "Request has expired")
        upload = self._uploads.get(parts[2])
        if upload is None or upload.completed is not None or not 1 <= number <= upload.parts:
            return _cdn_error(404, "NoSuchUpload", "The specified upload does not exist.")
        upload.part_data[number] = req.body
        etag = f'"{hashlib.md5(req.body, usedforsecurity=False).hexdigest()}"'
        return _http.HttpResponse(200, b"", [("ETag", etag)])

    # ------------------------------------------------------------------ admin
    def _admin(self, req):
        """Steering over HTTP for an emulator in another process (no auth: loopback).

        GET  /_emulator/stats              counters, knobs, active faults
        GET  /_emulator/requests?limit=N   the last N recorded requests (bodies as text)
        POST /_emulator/faults             body: inject() keywords; DELETE clears all
        POST /_emulator/outcomes           body: next_job_outcome() keywords
        POST /_emulator/config             body: {knob: value}
        POST /_emulator/reset | /expire_urls | /advance {"seconds": s}
        """
        name = req.path[len("/_emulator/") :].strip("/")
        method = req.method
        body = {}
        if method == "POST" and req.body:
            body, err = self._read_json(req)
            if err:
                return err
        try:
            if name == "stats" and method == "GET":
                return _json(200, self.stats())
            if name == "requests" and method == "GET":
                limit = int((req.query if req.query_string else {}).get("limit", "100"))
                items = list(self._requests)[-limit:] if limit > 0 else []
                return _json(
                    200,
                    {
                        "requests": [
                            {
                                "origin": r.origin,
                                "method": r.method,
                                "path": r.path,
                                "query": r.query,
                                "headers": r.headers,
                                "body": r.body[:4096].decode("utf-8", "replace"),
                                "bodyLength": len(r.body),
                                "time": r.time,
                                "fault": r.fault,
                            }
                            for r in items
                        ]
                    },
                )
            if name == "faults" and method == "POST":
                fault = self.inject(**body)
                return _json(200, {"fault": fault.as_dict()})
            if name == "faults" and method == "DELETE":
                self.clear_faults()
                return _json(200, {"ok": True})
            if name == "outcomes" and method == "POST":
                self.next_job_outcome(**body)
                return _json(200, {"ok": True})
            if name == "config" and method == "POST":
                unknown = [k for k in body if k not in KNOBS]
                if unknown:
                    return _json(400, {"reason": f"unknown knobs: {unknown}"})
                for k, v in body.items():
                    setattr(self, k, v)
                return _json(200, {"knobs": {k: getattr(self, k) for k in KNOBS}})
            if name == "reset" and method == "POST":
                self.reset()
                return _json(200, {"ok": True})
            if name == "expire_urls" and method == "POST":
                self.expire_urls()
                return _json(200, {"ok": True})
            if name == "advance" and method == "POST":
                self.advance(float(body.get("seconds", 0)))
                return _json(200, {"ok": True})
        except (TypeError, ValueError) as exc:
            return _json(400, {"reason": str(exc)})
        return _json(404, {"message": "Not Found"})


# ============================================================================ helpers


def _schedule(outcome, d):
    steps = [(0.0, "queued"), (0.1 * d, "warming-up"), (0.2 * d, "in-progress")]
    if outcome == "success":
        steps += [(0.85 * d, "finalizing"), (d, "success")]
    elif outcome == "failure":
        steps.append((0.6 * d, "failure"))
    elif outcome == "canceled":
        steps.append((0.5 * d, "canceled"))
    return steps


def _ticks(seed, d, n=12):
    """Seeded, uneven progress steps [(offset, value)] inside in-progress (20%..84%)."""
    rng = random.Random(seed ^ 0x5EED)
    gaps = [rng.random() + 0.15 for _ in range(n)]
    weights = [0.0 if rng.random() < 0.2 else rng.random() ** 2 + 0.02 for _ in range(n)]
    weights[-1] = max(weights[-1], 0.05)
    gsum, wsum = sum(gaps), sum(weights)
    span = 0.64 * d
    out = []
    off = 0.2 * d
    acc = 0.0
    for g, w in zip(gaps, weights):
        off += span * g / gsum
        acc += w
        out.append((off, round(0.97 * acc / wsum, 3)))
    return out


def _parse_range(header, total):
    """(start, end_exclusive) for a single byte range, None to ignore, or 'unsatisfiable'."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        n = int(last)
        if n == 0:
            return "unsatisfiable"
        return max(total - n, 0), total
    start = int(first)
    end = min(int(last) + 1, total) if last else total
    if start >= total or end <= start:
        return "unsatisfiable"
    return start, end


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    cleaned = "".join(text.split())
    try:
        if "-" in cleaned or "_" in cleaned:
            return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None


# ============================================================================ serving


def serve(
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    cdn_port: int = 0,
    job_duration: float = 2.0,
    api_key: str = "emu-key",
    api_secret: str = "emu-secret",
    bearer_token: str | None = None,
    seed: int | None = None,
    url_ttl: float = 86400,
    outputs_per_job: int = 1,
    image_long_side: int = 256,
    asset_size_bytes: int | None = None,
    max_recorded_requests: int | None = 10000,
    ssl_context=None,
    out=None,
) -> None:
    """Run an emulator in the foreground until SIGINT or SIGTERM.

    Prints the base URL and the credentials as KEY=value lines to stdout (or
    `out`), flushed, so a parent process can read them; port=0 picks a free port.
    """
    import signal
    import sys

    out = out or sys.stdout
    emu = Emulator(
        host=host,
        port=port,
        cdn_port=cdn_port,
        api_key=api_key,
        api_secret=api_secret,
        bearer_token=bearer_token,
        job_duration=job_duration,
        url_ttl=url_ttl,
        seed=seed,
        outputs_per_job=outputs_per_job,
        image_long_side=image_long_side,
        asset_size_bytes=asset_size_bytes,
        max_recorded_requests=max_recorded_requests,
        ssl_context=ssl_context,
    )
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    emu.start()
    try:
        lines = [
            "Scenario API emulator running; Ctrl-C to stop.",
            f"SCENARIO_BASE_URL={emu.url}",
            f"SCENARIO_SDK_API_KEY={emu.api_key}",
            f"SCENARIO_SDK_API_SECRET={emu.api_secret}",
        ]
        if bearer_token:
            lines.append(f"SCENARIO_SDK_JWT={bearer_token}")
        lines += [
            f"SCENARIO_EMULATOR_CDN={emu.cdn_url}",
            f"SCENARIO_EMULATOR_ADMIN={emu.admin_url}/",
        ]
        print("\n".join(lines), file=out, flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m scenario_uni1.emulator",
        description="Run a local emulator of the Scenario API (Luma Uni-1 Max).",
    )
    p.add_argument("--port", type=int, default=0, help="API port (0: a free one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cdn-port", type=int, default=0)
    p.add_argument("--job-duration", type=float, default=2.0, help="seconds per job")
    p.add_argument("--api-key", default="emu-key")
    p.add_argument("--api-secret", default="emu-secret")
    p.add_argument("--bearer-token", default=None)
    p.add_argument(
        "--seed", type=int, default=None, help="reproducible ids and images (default: random)"
    )
    p.add_argument("--url-ttl", type=float, default=86400)
    p.add_argument("--outputs-per-job", type=int, default=1)
    p.add_argument("--image-long-side", type=int, default=256)
    p.add_argument("--asset-size-bytes", type=int, default=None)
    p.add_argument("--max-recorded-requests", type=int, default=10000)
    a = p.parse_args(argv)
    serve(
        a.port,
        a.host,
        cdn_port=a.cdn_port,
        job_duration=a.job_duration,
        api_key=a.api_key,
        api_secret=a.api_secret,
        bearer_token=a.bearer_token,
        seed=a.seed,
        url_ttl=a.url_ttl,
        outputs_per_job=a.outputs_per_job,
        image_long_side=a.image_long_side,
        asset_size_bytes=a.asset_size_bytes,
        max_recorded_requests=a.max_recorded_requests,
    )
    return 0

