"""Chaos: a random share of the requests on every route, each faulted with one of
the fault kinds the emulator has (Emulator.chaos).

A soak test needs faults it did not have to plan: any request may fail, in any
way a real network, gateway or CDN fails. Each request that reaches the
emulator (admin routes excepted, and a request an injected fault already took)
is drawn for: with probability `rate` it gets a one-time Fault of a kind picked
among those that make sense for its route, built here and applied by the same
code as Emulator.inject's faults.

Deterministic per seed: the draw for a request is a hash of the seed, the
request (method, path, and the body of an API POST) and how many times that
same request was seen before, so a client that sends the same requests gets the
same faults whatever order its threads send them in (job and asset ids in paths
are random unless the Emulator itself is seeded).
"""

from __future__ import annotations

import collections
import hashlib
import random

from .faults import Fault, Faults
from .wire import GENERATE_PATH

# (name, what it does); Chaos.kinds lists them, KINDS_BY_ROUTE says where each applies.
KINDS = {
    "5xx": "500, 502, 503 or 504 with the origin's usual error body",
    "html_502": "502 with an HTML page from a gateway (text/html)",
    "429": "429 with Retry-After: 1",
    "429_remaining": "429 with remainingSeconds: 1 in the body and no Retry-After",
    "429_ceiling": "429 too many jobs in flight: details {actionName, actionLimit}, no Retry-After",
    "drop_before": "connection reset as soon as the request arrived, nothing processed",
    "drop_after": "the request processed for real (a POST creates its job), then a reset",
    "create_after": "504 at once; the request is processed 0.1-1 s later (a POST's job then)",
    "drop_create_after": "a reset at once; the request is processed 0.1-1 s later",
    "truncate": "the head with the full Content-Length, half the body, then a close",
    "stall": "the head and half the body, then nothing until the client goes away",
    "slow": "no answer for 0.05-0.8 s, then the real one (processed after the wait)",
    "slow_answer": "processed at once, the answer held 0.05-0.8 s",
    "redirect": "302 to the same URL on the second CDN origin",
    "cdn_403": "403 AccessDenied, as for an expired or revoked signature",
    "html_200": "200 with an HTML page (text/html) instead of the image",
    "short_close": "half the image, no Content-Length, then a close",
    "short_chunked": "half the image chunked, with a proper last chunk",
    "endless": "the image with no Content-Length, then zero bytes until the client leaves",
    "ignore_range": "a Range request answered 200 with the whole image",
    "range_wrong_start": "a Range request answered 206 with the whole image from byte 0",
    "range_wrong_total": "the range asked for, with a total 1000 bytes too large",
    "range_extra": "the range asked for, then 1000 bytes more, close-delimited",
}

_API = (
    "5xx",
    "html_502",
    "429",
    "429_remaining",
    "drop_before",
    "drop_after",
    "truncate",
    "stall",
    "slow",
    "slow_answer",
)
_RANGE = ("ignore_range", "range_wrong_start", "range_wrong_total", "range_extra")
_CDN_GET = (
    "5xx",
    "429",
    "drop_before",
    "drop_after",
    "truncate",
    "stall",
    "slow",
    "redirect",
    "cdn_403",
    "html_200",
    "short_close",
    "short_chunked",
    "endless",
)
# A part PUT answers an empty body: truncating or stalling it changes nothing.
_PART_PUT = ("5xx", "429", "drop_before", "drop_after", "slow", "slow_answer")
_CDN_OTHER = ("5xx", "drop_before", "slow")  # a method the CDN refuses anyway

KINDS_BY_ROUTE = {
    "generate": _API + ("429_ceiling", "create_after", "drop_create_after"),
    "estimate": _API,
    "job": _API,
    "jobs": _API,
    "job_action": _API,
    "asset": _API,
    "asset_upload": _API,
    "asset_download": _API,
    "upload_create": _API,
    "upload": _API,
    "upload_action": _API,
    "api_other": _API,
    "cdn_get": _CDN_GET,  # plus _RANGE when the request has a Range header
    "part_put": _PART_PUT,
    "cdn_other": _CDN_OTHER,
}

_HTML = (
    "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center>"
    "<hr><center>gateway</center></body></html>"
)


def route_of(req) -> str:
    """The route a request is for, by name (the keys of KINDS_BY_ROUTE)."""
    path = req.path
    method = req.method
    if req.origin != "api":
        if method in ("GET", "HEAD"):
            return "cdn_get"
        return "part_put" if method == "PUT" and path.startswith("/uploads/") else "cdn_other"
    parts = path.split("/")  # ["", "v1", resource, ...]
    resource = parts[2] if len(parts) > 2 else ""
    n = len(parts)
    if path == GENERATE_PATH and method == "POST":
        dry = req.query.get("dryRun", "") if req.query_string else ""
        return "estimate" if dry.lower() in ("true", "1") else "generate"
    if resource == "jobs":
        if n <= 3 or (n == 4 and not parts[3]):
            return "jobs"
        return "job_action" if n == 5 and parts[4] == "action" else "job"
    if resource == "assets":
        if n == 3:
            return "asset_upload"
        return "asset_download" if n == 5 and parts[4] == "download" else "asset"
    if resource == "uploads":
        if n == 3:
            return "upload_create"
        return "upload_action" if n == 5 and parts[4] == "action" else "upload"
    return "api_other"


class Chaos:
    """The chaos now in force (see Emulator.chaos), and what it did.

    `seen` counts the requests drawn for, by route; `counts` the faults given,
    by kind; `by_route` the faults given, by (route, kind). Read them under no
    lock: they are copies (properties)."""

    def __init__(self, rate: float, seed: int | None, kinds, lock):
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
            raise ValueError("rate must be a number between 0 and 1")
        if seed is None:
            seed = random.SystemRandom().getrandbits(63)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError("seed must be an int (or None for a random one)")
        if kinds is not None:
            kinds = tuple(kinds)
            unknown = [k for k in kinds if k not in KINDS]
            if unknown or not kinds:
                raise ValueError(f"unknown chaos kinds {unknown!r}; known: {list(KINDS)}")
        self.rate = float(rate)
        self.seed = seed
        self.kinds = kinds  # None: every kind
        self._lock = lock
        self._salt = hashlib.blake2b(b"uni1-chaos:%d" % seed, digest_size=16).digest()
        self._occurrences: dict[bytes, int] = {}
        self._seen: collections.Counter = collections.Counter()
        self._counts: collections.Counter = collections.Counter()
        self._by_route: collections.Counter = collections.Counter()

    @property
    def seen(self) -> dict:
        with self._lock:
            return dict(self._seen)

    @property
    def counts(self) -> dict:
        with self._lock:
            return dict(self._counts)

    @property
    def by_route(self) -> dict:
        with self._lock:
            return dict(self._by_route)

    @property
    def faulted(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def as_dict(self) -> dict:
        with self._lock:
            return {
                "rate": self.rate,
                "seed": self.seed,
                "kinds": list(self.kinds) if self.kinds else None,
                "seen": dict(self._seen),
                "counts": dict(self._counts),
                "byRoute": {f"{r} {k}": n for (r, k), n in self._by_route.items()},
            }

    def __repr__(self):
        return f"<Chaos rate={self.rate} seed={self.seed} faulted={self.faulted}>"

    # -------------------------------------------------------------- the draw
    def _draw(self, req):
        """A one-time Fault for this request, or None. Called under the emulator's lock."""
        route = route_of(req)
        self._seen[route] += 1
        h = hashlib.blake2b(self._salt, digest_size=16)
        h.update(b"%s %s %s\0" % (req.origin.encode(), req.method.encode(), req.path.encode()))
        if req.origin == "api" and req.method == "POST" and req.body:
            h.update(req.body)
        key = h.digest()
        n = self._occurrences.get(key, 0)
        self._occurrences[key] = n + 1
        rng = random.Random(key + b"%d" % n)
        if rng.random() >= self.rate:
            return None
        choices = KINDS_BY_ROUTE[route]
        if route == "cdn_get" and "range" in req.headers:
            choices = choices + _RANGE
        if self.kinds is not None:
            choices = tuple(k for k in choices if k in self.kinds)
            if not choices:
                return None
        kind = rng.choice(choices)
        self._counts[kind] += 1
        self._by_route[(route, kind)] += 1
        return _make_fault(kind, req, rng)


def _make_fault(kind, req, rng) -> Fault:
    status: int | None = None
    body: str | dict[str, object] | None = None
    headers: dict[str, str] | None = None
    action: str | None = None
    delay = 0.0
    answer_delay = 0.0
    create_after = None
    if kind == "5xx":
        status = rng.choice((500, 502, 503, 504))
    elif kind == "html_502":
        status, body = 502, _HTML.format("502 Bad Gateway")
        headers = {"Content-Type": "text/html"}
    elif kind == "429":
        status, headers = 429, {"Retry-After": "1"}
        body = {"reason": "Too Many Requests"}
    elif kind == "429_remaining":
        status, body = 429, {"reason": "Too Many Requests", "remainingSeconds": 1}
    elif kind == "429_ceiling":
        status = 429
        body = {
            "reason": "Too many jobs in progress",
            "details": {"actionName": "generate", "actionLimit": rng.choice((4, 10, 20))},
        }
    elif kind == "create_after":
        status, create_after = 504, rng.uniform(0.1, 1.0)
    elif kind == "drop_create_after":
        action, create_after = "drop_after", rng.uniform(0.1, 1.0)
    elif kind == "slow":
        delay = rng.uniform(0.05, 0.8)
    elif kind == "slow_answer":
        answer_delay = rng.uniform(0.05, 0.8)
    elif kind == "cdn_403":
        status = 403
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            "<Error><Code>AccessDenied</Code><Message>Access denied</Message></Error>"
        )
        headers = {"Content-Type": "text/xml", "Server": "CloudFront"}
    elif kind == "html_200":
        status, body = 200, _HTML.format("Service Unavailable")
        headers = {"Content-Type": "text/html"}
    else:  # a Fault action of the same name
        action = kind
    fault = Fault(
        req.method,
        None,
        req.origin,
        status,
        body,
        headers,
        1,
        delay,
        action,
        create_after=create_after,
        answer_delay=answer_delay,
    )
    fault.hits = 1
    return fault


class ChaosFaults(Faults):
    """Emulator.chaos, and the draw that gives a request its chaos fault."""

    def chaos(self, rate: float | None = 0.05, *, seed: int | None = None, kinds=None):
        """Fault a random `rate` of all requests, on every route (rate 0 or None: stop).

        Every request (API and both CDN origins; admin ones never) is drawn for
        once its body is in, unless an injected fault (inject) already took it.
        A faulted request gets one of the kinds of chaos.KINDS that apply to its
        route (chaos.KINDS_BY_ROUTE; the Range lies only on a request with a
        Range header), or one of `kinds` only, when given. The same seed gives the
        same faults to the same requests (see the module's docstring); seed None
        draws one, kept in the returned object's `seed`.

        Returns the Chaos object, whose `seen`, `counts` and `by_route` count the
        requests drawn for and the faults given. reset() turns chaos off.
        """
        if rate is None or rate == 0:
            with self._lock:
                self._chaos = None
            return None
        chaos = Chaos(rate, seed, kinds, self._lock)
        with self._lock:
            self._chaos = chaos
        return chaos

    @property
    def chaos_in_force(self) -> Chaos | None:
        """The Chaos set by chaos(), or None."""
        return self._chaos

    def _on_request(self, site, req):
        """The whole request is in: chaos may fault it (see chaos())."""
        chaos = self._chaos
        if chaos is None or req.fault is not None or req.path.startswith("/_emulator/"):
            return
        with self._lock:
            req.fault = chaos._draw(req)
