"""The Emulator: its lifecycle (an event loop on a thread), origins, knobs,
credentials, observation, and the /_emulator/ steering routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import re
import threading

from . import http as _http
from . import images as _img
from .chaos import ChaosFaults
from .routes import Routes
from .wire import _copy, _json, _read_json

TYPE_CHECKING = False  # type checkers take the branch; nothing more is imported at run time
if TYPE_CHECKING:
    from typing import Any

    from .._client import Client

log = logging.getLogger("scenario_uni1.emulator")

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

    def on_request(self, req):
        self.emulator._on_request(self, req)

    def schedule_late(self, req, delay):
        emulator = self.emulator
        with emulator._lock:
            emulator._late_pending += 1
        asyncio.get_running_loop().call_later(delay, self.handle_late, req)

    def handle_late(self, req):
        """Process a request whose answer was already given (a fault's create_after)."""
        emulator = self.emulator
        try:
            emulator._handle(self, req)
        except Exception:
            log.exception("emulator late handler failed for %s %s", req.method, req.path)
        finally:
            with emulator._lock:
                emulator._late_pending -= 1

    def record(self, req):
        with self.emulator._lock:
            self.emulator._record(req)

    def fault_response(self, req, fault):
        return self.emulator._fault_response(self, req, fault)

    def redirect_response(self, req):
        return self.emulator._redirect_response(req)


# ============================================================================ emulator


class Emulator(Routes, ChaosFaults):
    """The local Scenario API. Start it with `with Emulator() as emu:` or start()/stop().

    Knobs (attributes, also constructor keywords; change them at any time, a job
    keeps the values it was created with):

      job_duration (s, 2.0; 0 = success on the first GET), url_ttl (s, 86400),
      outputs_per_job (1), image_long_side (256 px), asset_size_bytes (None: pad
      generated images to this exact size), upload_duration (s, 0.3),
      record_requests (True), max_body_bytes (10 MiB), max_jobs_in_flight (None;
      also `max_in_flight`: the team's concurrency ceiling, with N jobs not yet
      terminal a POST /generate is a 429 {"reason", "details": {"actionName":
      "generate", "actionLimit": N}} that creates and bills nothing),
      cancellable (False: custom jobs refuse cancel, as live),
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
        self._late_pending = 0  # create_after requests not processed yet (survives reset)
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

    @property
    def max_in_flight(self) -> int | None:
        """The concurrency ceiling (another name for the knob max_jobs_in_flight)."""
        return self.max_jobs_in_flight

    @max_in_flight.setter
    def max_in_flight(self, value: int | None) -> None:
        self.max_jobs_in_flight = value

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

    def reset(self) -> None:
        """Forget all jobs, assets, uploads, requests, faults and pending outcomes, and
        put every knob back to its constructor value. Issued URLs are revoked."""
        with self._lock:
            self._clear_state()
            for k, v in self._initial_knobs.items():
                setattr(self, k, v)
            self._key_generation += 1

    def expire_urls(self) -> None:
        """Make every signed URL issued so far (CDN downloads, upload parts) invalid now."""
        with self._lock:
            self._key_generation += 1

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
    def late_pending(self) -> int:
        """Requests a create_after fault will still process (a POST's job is yet to come)."""
        return self._late_pending

    def created_jobs(self) -> list:
        """(job id, the generate request's JSON body) of every job created, oldest first."""
        with self._lock:
            return [(j.id, _copy(j.input)) for j in self._job_list]

    def asset_bytes(self, asset_id: str, fmt: str | None = None) -> bytes:
        """The bytes the CDN serves for an asset (in `fmt`, a conversion; KeyError if unknown)."""
        with self._lock:
            asset = self._assets[asset_id]
            body = asset.body() if fmt is None else self._converted(asset, fmt)
        return body.tobytes()

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
                "late_pending": self._late_pending,
                "chaos": None if self._chaos is None else self._chaos.as_dict(),
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

    # ------------------------------------------------------------------ request path
    def _handle(self, site, req):
        with self._lock:
            if req.path.startswith("/_emulator/"):
                return self._admin(req)
            if site.origin == "api":
                return self._api(req)
            return self._cdn(req)

    # ------------------------------------------------------------------ admin
    def _admin(self, req):
        """Steering over HTTP for an emulator in another process (no auth: loopback).

        GET  /_emulator/stats              counters, knobs, active faults
        GET  /_emulator/requests?limit=N   the last N recorded requests (bodies as text)
        POST /_emulator/faults             body: inject() keywords; DELETE clears all
        POST /_emulator/outcomes           body: next_job_outcome() keywords
        POST /_emulator/chaos              body: chaos() keywords; DELETE stops it
        POST /_emulator/config             body: {knob: value}
        POST /_emulator/reset | /expire_urls | /advance {"seconds": s}
        """
        name = req.path[len("/_emulator/") :].strip("/")
        method = req.method
        body = {}
        if method == "POST" and req.body:
            body, err = _read_json(req)
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
            if name == "chaos" and method == "POST":
                chaos = self.chaos(**body)
                return _json(200, {"chaos": None if chaos is None else chaos.as_dict()})
            if name == "chaos" and method == "DELETE":
                self.chaos(None)
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
