"""What every route shares: constants of the contract, JSON answers, request bodies."""

from __future__ import annotations

import json
import time

from . import http as _http

MODEL_ID = "model_luma-uni-1-max"
GENERATE_PATH = "/v1/generate/custom/" + MODEL_ID
TERMINAL = frozenset(("success", "failure", "canceled"))

_JSON_CT = ("Content-Type", "application/json; charset=utf-8")
_XML_CT = ("Content-Type", "text/xml")


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


def _method_not_allowed():
    return _json(405, {"message": "Method Not Allowed"})


def _read_json(req):
    """The JSON object body, or an error response."""
    try:
        body = json.loads(req.body) if req.body else None
    except (ValueError, UnicodeDecodeError):
        return None, _json(400, {"reason": "Invalid JSON in request body"})
    if not isinstance(body, dict):
        return None, _json(400, {"reason": "Request body must be a JSON object"})
    return body, None


def _project(req):
    if req.query_string:
        return req.query.get("projectId") or None
    return None
