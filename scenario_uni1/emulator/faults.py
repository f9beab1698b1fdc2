"""Injected faults: the Fault rule, which request it takes, the answer it gives,
and the queue of decided job outcomes."""

from __future__ import annotations

import re

from . import http as _http
from .cdn import _XML_CT, _cdn_error
from .state import State
from .wire import _json

ACTIONS = (
    None,
    "drop_before",
    "drop_after",
    "stall",
    "truncate",
    "redirect",
) + _http.CDN_BODY_ACTIONS

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


class Faults(State):
    """Emulator.inject and next_job_outcome, and the rules that apply them."""

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
