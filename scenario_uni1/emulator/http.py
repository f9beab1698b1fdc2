"""A small HTTP/1.1 server on asyncio protocols, for the emulator.

Why not http.server: it manages a few thousand requests a second at best, and
the benchmarks need the emulator to be faster than the clients it measures. This
one parses a request with a handful of bytes operations and answers a small JSON
body with a single transport.write, so one keep-alive connection gets well over
5,000 requests a second.

Supported: keep-alive and `Connection: close`, pipelining (answered in order),
Content-Length and chunked request bodies, `Expect: 100-continue`, HEAD, large
bodies streamed from memory with flow control. The fault actions (drop, stall,
truncate, delay, redirect, and the lying-CDN ones: short_close, short_chunked,
endless, ignore_range, range_wrong_start, range_wrong_total, range_extra) live
here because they act on the connection.

The application side is a "site" object with these methods:
    on_headers(req) -> None | "drop" | HttpResponse   (after the head is parsed)
    on_request(req)                                     (the body is in; may set req.fault)
    record(req)                                         (once per request with a body read)
    handle(req) -> HttpResponse                         (synchronous, on the loop)
    schedule_late(req, delay)                           (a fault's create_after: handled
                                                         `delay` s later, answer dropped)
    fault_response(req, fault) -> HttpResponse
    redirect_response(req) -> HttpResponse
and the attributes `origin` (a name) and `connections` (a set).
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
import time
from urllib.parse import parse_qsl

log = logging.getLogger("scenario_uni1.emulator")

MAX_HEAD_BYTES = 64 * 1024
SMALL_BODY = 256 * 1024
STREAM_CHUNK = 1 << 20
# Fault actions that answer a CDN GET with a body that lies about itself.
CDN_BODY_ACTIONS = (
    "short_close",
    "short_chunked",
    "endless",
    "ignore_range",
    "range_wrong_start",
    "range_wrong_total",
    "range_extra",
)

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
# Node answers a status it has no phrase for with "unknown"; the API's 269 is one.
_REASONS[269] = "unknown"


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "unknown")


_date_cache: list = [0, ""]  # [unix second, its HTTP date]


def http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


class HttpRequest:
    __slots__ = (
        "_query",
        "body",
        "chunked",
        "content_length",
        "fault",
        "headers",
        "keep_alive",
        "method",
        "origin",
        "path",
        "query_string",
        "target",
        "time",
        "version",
    )

    def __init__(self, origin, method, target, version, headers):
        self.origin = origin
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = b""
        self.fault = None
        self.time = time.time()
        self._query = None
        if target.startswith(("http://", "https://")):  # absolute form, as sent to a proxy
            slash = target.find("/", target.find("//") + 2)
            target = target[slash:] if slash >= 0 else "/"
        path, _, qs = target.partition("?")
        self.path = path
        self.query_string = qs
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self.keep_alive = "keep-alive" in conn
        else:
            self.keep_alive = "close" not in conn
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = "chunked" in te
        cl = headers.get("content-length")
        if cl is None or self.chunked:
            self.content_length = 0
        else:
            cl = cl.strip()
            if not cl.isdigit():
                raise ValueError("bad Content-Length")
            self.content_length = int(cl)

    @property
    def query(self) -> dict:
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string, keep_blank_values=True))
        return self._query


class HttpResponse:
    __slots__ = ("body", "close", "headers", "reason", "status")

    def __init__(self, status: int, body=b"", headers=None, close: bool = False, reason=None):
        self.status = status
        self.body = body  # bytes or a Body (segments)
        self.headers = headers if headers is not None else []
        self.close = close
        self.reason = reason

    def head_bytes(self, length: int | None, close: bool, chunked: bool = False) -> bytes:
        """The head; length None frames the body otherwise (chunked, or by closing)."""
        reason = self.reason or reason_phrase(self.status)
        parts = [f"HTTP/1.1 {self.status} {reason}\r\nDate: {http_date()}\r\n"]
        if chunked:
            parts.append("Transfer-Encoding: chunked\r\n")
        elif length is not None:
            parts.append(f"Content-Length: {length}\r\n")
        for k, v in self.headers:
            parts.append(f"{k}: {v}\r\n")
        if close:
            parts.append("Connection: close\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("latin-1")


def _body_len(body) -> int:
    return len(body)


class _ChunkedIncomplete(Exception):
    pass


def _parse_chunked(buf: bytearray):
    """Decode a complete chunked body at the start of buf: (body, bytes used).

    Raises _ChunkedIncomplete when more data is needed, ValueError when malformed.
    Only chunk heads are scanned, so a re-scan per arriving packet is cheap.
    """
    pos = 0
    pieces: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise ValueError("chunk size line too long")
            raise _ChunkedIncomplete
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        size = int(size_text, 16)  # ValueError if malformed
        pos = eol + 2
        if size == 0:
            # trailers until an empty line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    raise _ChunkedIncomplete
                line_empty = eol == pos
                pos = eol + 2
                if line_empty:
                    return b"".join(pieces), pos
        if len(buf) < pos + size + 2:
            raise _ChunkedIncomplete
        pieces.append(bytes(buf[pos : pos + size]))
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("bad chunk terminator")
        pos += size + 2


class HttpConnection(asyncio.Protocol):
    """One client connection. Requests are answered strictly in order."""

    def __init__(self, site):
        self.site = site
        self.transport = None
        self.buf = bytearray()
        self.pending = None  # a request whose body is still arriving
        self.busy = False  # an asynchronous answer is in progress
        self.closed = False
        self.dead = False  # stop reading requests (dropped / closing)
        self.paused = False
        self.eof = False
        self.discard = 0  # body bytes to throw away after an early answer
        self._writable = None
        self._lost = None
        self.task = None

    # ------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport):
        self.transport = transport
        self.site.connections.add(self)
        # Pause as soon as anything is buffered: a big body is then handed to the
        # kernel straight from the cached image, and the transport's own buffer (a
        # bytearray that is copied into and shifted on every send) stays small.
        if transport.get_extra_info("sslcontext") is not None:
            # asyncio's SSL transport does not reliably call resume_writing()
            # after a zero high-water mark, which stalls streamed bodies: give
            # it a small buffer instead.
            transport.set_write_buffer_limits(high=64 * 1024)
        else:
            transport.set_write_buffer_limits(high=0)

    def connection_lost(self, exc):
        self.closed = True
        self.dead = True
        self.site.connections.discard(self)
        for fut in (self._writable, self._lost):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        fut = self._writable
        if fut is not None and not fut.done():
            fut.set_result(None)

    def eof_received(self):
        self.eof = True
        if self.busy or self.buf:
            if not self.busy:
                self._process()
            return True
        return False

    def data_received(self, data):
        if self.dead:
            return
        if self.discard:
            n = min(self.discard, len(data))
            self.discard -= n
            data = data[n:]
            if not self.discard:
                self.close()
            return
        self.buf += data
        if not self.busy:
            self._process()

    # ------------------------------------------------------------ parsing
    def close(self):
        self.dead = True
        if self.transport is not None and not self.closed:
            self.transport.close()

    def abort(self):
        self.dead = True
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def _bad_request(self, status=400, text="Bad Request"):
        resp = HttpResponse(status, text.encode(), [("Content-Type", "text/plain")], close=True)
        self.transport.write(resp.head_bytes(len(resp.body), True) + resp.body)
        self.close()

    def _process(self):
        buf = self.buf
        while not self.busy and not self.dead:
            req = self.pending
            if req is None:
                while buf[:2] == b"\r\n":
                    del buf[:2]
                idx = buf.find(b"\r\n\r\n")
                if idx < 0:
                    if len(buf) > MAX_HEAD_BYTES:
                        self._bad_request(431, "Request Header Fields Too Large")
                    elif self.eof and not self.busy:
                        self.close()
                    return
                head = buf[:idx].decode("latin-1")
                del buf[: idx + 4]
                try:
                    req = self._parse_head(head)
                except ValueError:
                    self._bad_request()
                    return
                early = self.site.on_headers(req)
                if early is not None:
                    if early == "drop":
                        self.dead = True
                        self._start(self._drop(req.fault.delay if req.fault else 0.0))
                        return
                    # An answer before the body (e.g. 413): send it, swallow the body
                    # so the client can read the answer, then close.
                    self.transport.write(early.head_bytes(len(early.body), True) + early.body)
                    rest = req.content_length - len(buf)
                    buf.clear()
                    self.busy = True  # parse nothing more
                    if rest > 0 and not req.chunked and rest < (1 << 30):
                        self.discard = rest
                    else:
                        self.close()
                    return
                if req.content_length or req.chunked:
                    expect = req.headers.get("expect", "").lower()
                    if expect == "100-continue" and len(buf) == 0:
                        self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.pending = req
            # body
            if req.chunked:
                try:
                    body, used = _parse_chunked(buf)
                except _ChunkedIncomplete:
                    if self.eof:
                        self.close()
                    return
                except ValueError:
                    self._bad_request()
                    return
                del buf[:used]
                req.body = body
            elif req.content_length:
                n = req.content_length
                if len(buf) < n:
                    if self.eof:
                        self.close()
                    return
                req.body = bytes(buf[:n])
                del buf[:n]
            self.pending = None
            self._dispatch(req)
        if self.eof and not self.busy and not self.buf and not self.closed:
            self.close()

    def _parse_head(self, head: str) -> HttpRequest:
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            name = name.strip().lower()
            value = value.strip()
            if name in headers:
                headers[name] += ", " + value
            else:
                headers[name] = value
        return HttpRequest(self.site.origin, parts[0], parts[1], parts[2], headers)

    # ------------------------------------------------------------ answering
    def _dispatch(self, req: HttpRequest):
        if req.fault is None:
            self.site.on_request(req)
        self.site.record(req)
        if req.fault is not None:
            self._start(self._faulted(req, req.fault))
            return
        try:
            resp = self.site.handle(req)
        except Exception:
            log.exception("emulator handler failed for %s %s", req.method, req.path)
            resp = HttpResponse(
                500, b'{"message":"Internal Server Error"}', [("Content-Type", "application/json")]
            )
        self._write_response(req, resp)

    def _write_response(self, req, resp, force_close=False):
        close = force_close or resp.close or not req.keep_alive
        body = resp.body
        length = len(body)
        head = resp.head_bytes(length, close)
        if req.method == "HEAD" or length == 0:
            self.transport.write(head)
        elif isinstance(body, (bytes, bytearray)) and length <= SMALL_BODY:
            self.transport.write(head + body)
        else:
            self._start(self._stream(head, body, close))
            return
        if close:
            self.close()

    def _start(self, coro):
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(coro)
        self.task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self.task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("emulator connection task failed", exc_info=task.exception())
            self.abort()
        self.busy = False
        if not self.dead:
            self._process()

    async def _wait_writable(self):
        if self.paused and not self.closed:
            self._writable = asyncio.get_running_loop().create_future()
            await self._writable
            self._writable = None

    async def _send_body(self, body, limit=None) -> bool:
        """Write body (or its first `limit` bytes); False if the connection went away."""
        if isinstance(body, (bytes, bytearray)):
            body = memoryview(body)
            chunks = (body[a : a + STREAM_CHUNK] for a in range(0, len(body), STREAM_CHUNK))
        else:
            chunks = body.chunks(STREAM_CHUNK)
        sent = 0
        for chunk in chunks:
            if limit is not None and sent + len(chunk) > limit:
                chunk = chunk[: limit - sent]
            if self.closed:
                return False
            await self._wait_writable()
            if self.closed:
                return False
            self.transport.write(chunk)
            sent += len(chunk)
            if limit is not None and sent >= limit:
                break
        await self._wait_writable()
        return not self.closed

    async def _stream(self, head, body, close):
        self.transport.write(head)
        await self._send_body(body)
        if close:
            self.close()

    async def _drop(self, delay):
        if delay:
            await asyncio.sleep(delay)
        self.abort()

    async def _wait_lost(self):
        if not self.closed:
            self._lost = asyncio.get_running_loop().create_future()
            await self._lost

    async def _faulted(self, req, fault):
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if self.closed:
            return
        action = fault.action
        site = self.site
        if action == "drop_before":  # the head arrived with a body (delay case)
            self.abort()
            return
        late = fault.create_after
        if late is not None:
            # The backend behind the gateway goes on: it processes the request
            # later, whatever the client was told (see Emulator.inject).
            site.schedule_late(req, late)
        if action == "drop_after":
            try:
                if late is None:
                    site.handle(req)
            finally:
                self.abort()
            return
        if action in CDN_BODY_ACTIONS:
            await self._lying_cdn(req, action)
            return
        if action == "redirect":
            resp = site.redirect_response(req)
        elif fault.status is not None:
            resp = site.fault_response(req, fault)
        else:
            resp = site.handle(req)
            if fault.headers:
                resp.headers.extend(fault.headers.items())
            if fault.answer_delay:
                await asyncio.sleep(fault.answer_delay)
                if self.closed:
                    return
        if action in ("stall", "truncate"):
            body = resp.body
            length = len(body)
            self.transport.write(resp.head_bytes(length, False))
            if req.method != "HEAD":
                part = length // 2
                if action == "stall":
                    part = min(part, STREAM_CHUNK)
                await self._send_body(body, limit=part)
            if action == "truncate":
                self.close()
            else:
                self.dead = True
                await self._wait_lost()
            return
        close = resp.close or not req.keep_alive
        head = resp.head_bytes(len(resp.body), close)
        self.transport.write(head)
        if req.method != "HEAD" and len(resp.body):
            await self._send_body(resp.body)
        if close:
            self.close()

    async def _lying_cdn(self, req, action):
        """The CDN faults that frame a body as complete when it is not, or
        answer a Range request with something else than that range."""
        asked_range = "range" in req.headers
        if action in ("ignore_range", "range_wrong_start"):
            # a copy: the recorded request keeps what the client sent
            req.headers = {k: v for k, v in req.headers.items() if k != "range"}
        resp = self.site.handle(req)
        body = resp.body
        if not isinstance(body, (bytes, bytearray)):
            body = body.tobytes()
        if resp.status not in (200, 206) or req.method == "HEAD":
            await self._send_plain(req, resp, body)
            return
        headers = [(k, v) for k, v in resp.headers if k.lower() != "content-range"]
        total = len(body)
        if resp.status == 206:
            span = dict(resp.headers)["Content-Range"].split()[1]  # "a-b/total"
            total = int(span.rpartition("/")[2])
        if action == "short_close":  # HTTP/1.0 style: no length, the close ends the body
            self.transport.write(resp.head_bytes(None, True))
            await self._send_body(body[: len(body) // 2])
            self.close()
        elif action == "short_chunked":  # a well-formed last chunk after half the body
            self.transport.write(resp.head_bytes(None, False, chunked=True))
            half = body[: len(body) // 2]
            self.transport.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(half), half))
        elif action == "endless":  # the body, then more bytes until the client gives up
            self.transport.write(resp.head_bytes(None, True))
            await self._send_body(body)
            filler = bytes(64 * 1024)
            while not self.closed:
                await self._wait_writable()
                if self.closed:
                    break
                self.transport.write(filler)
                await asyncio.sleep(0)
            self.close()
        elif action == "range_wrong_start":  # 206, but the whole body from byte 0
            resp.status = 206
            resp.headers = headers + [("Content-Range", f"bytes 0-{total - 1}/{total}")]
            await self._send_plain(req, resp, body)
        elif action == "range_wrong_total" and resp.status == 206:
            start, _, end = span.partition("/")[0].partition("-")
            resp.headers = headers + [("Content-Range", f"bytes {start}-{end}/{total + 1000}")]
            await self._send_plain(req, resp, body)
        elif action == "range_extra" and resp.status == 206:  # the range, then junk, closed
            self.transport.write(resp.head_bytes(None, True))
            await self._send_body(body + bytes(1000))
            self.close()
        else:  # ignore_range, or a Range fault on a request without Range
            if asked_range:
                log.debug("emulator: %s ignored the Range header", action)
            await self._send_plain(req, resp, body)

    async def _send_plain(self, req, resp, body):
        close = resp.close or not req.keep_alive
        self.transport.write(resp.head_bytes(len(body), close))
        if body:
            await self._send_body(body)
        if close:
            self.close()
