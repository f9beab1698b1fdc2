"""Malformed answers on every endpoint: an APIError, never a crash, a hang or a wrong result.

Each endpoint the client reads JSON from (submit, job GET, asset GET, job
listing, upload) is answered with HTTP 200 and a broken body, injected with
emu.inject(..., status=200, body=...). Two families:

  - generic breakage applied to a body that is otherwise valid for that
    endpoint: truncation, wrong top-level types, trailing data, 100,000-deep
    nesting, huge strings, invalid UTF-8 (stray bytes, overlong forms, encoded
    surrogates, Latin-1, UTF-16), raw NUL, non-JSON literals;
  - per-endpoint wrong types, missing fields and nulls where a value is required,
    and hostile ids and URLs.

A control case per endpoint (the unbroken body) proves that the harness itself
succeeds, so every failure below is caused by the breakage.
"""

from __future__ import annotations

import copy
import json
import os

import pytest
from conftest import GENERATE_PATH, png_bytes

import scenario_uni1 as uni1

GEN = "^" + GENERATE_PATH + "$"
JOB_GET = r"^/v1/jobs/job_[A-Za-z0-9]+$"
LISTING = r"^/v1/jobs$"
ASSET_GET = r"^/v1/assets/asset_"
UPLOAD = r"^/v1/assets$"
CDN = r"^/assets/"

MARK = "hello-marker"  # a harmless string every template carries, for encoding damage

JOB = {
    "jobId": "job_abc123DEF456ghi789JKL0",
    "jobType": "custom",
    "status": "success",
    "progress": 1.0,
    "statusHistory": [{"date": "2026-01-01T00:00:00.000Z", "status": "success"}],
    "metadata": {
        "assetIds": ["asset_abc123DEF456ghi789JK"],
        "error": None,
        "hint": None,
        "input": {"prompt": "x"},
        "output": None,
    },
    "createdAt": "2026-01-01T00:00:00.000Z",
    "note": MARK,
}
ASSET = {
    "id": "asset_abc123DEF456ghi789JK",
    "url": "http://127.0.0.1:9/assets/asset_abc/original.png?Policy=p&Signature=s&Key-Pair-Id=k",
    "mimeType": "image/png",
    "kind": "image",
    "status": "success",
    "metadata": {"width": 64, "height": 32, "size": 100},
    "note": MARK,
}
TEMPLATES = {
    "submit": {"job": dict(JOB, status="queued", progress=0), "creativeUnitsCost": 10},
    "job": {"job": JOB},
    "listing": {"jobs": [JOB], "nextPaginationToken": "tok123", "note": MARK},
    "asset": {"asset": ASSET},
    "upload": {"asset": ASSET},
}
ROUTES = {
    "submit": ("POST", GEN),
    "job": ("GET", JOB_GET),
    "listing": ("GET", LISTING),
    "asset": ("GET", ASSET_GET),
    "upload": ("POST", UPLOAD),
}
ENDPOINTS = tuple(ROUTES)


def call(endpoint, client):
    """One call that reads the endpoint; returns what it parsed."""
    if endpoint == "submit":
        return client._submit("x")
    if endpoint == "job":
        return client.job(JOB["jobId"])  # an answer about another id is refused too
    if endpoint == "listing":
        return client.list_jobs()
    if endpoint == "asset":
        return client.get_asset(ASSET["id"])
    return client.upload(png_bytes(8, 8))


def encode(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------ generic damage

DEEP = 100_000


def _replace_mark(valid: bytes, new: bytes) -> bytes:
    token = json.dumps(MARK).encode()
    assert valid.count(token) >= 1
    return valid.replace(token, new, 1)


GENERIC = {
    "empty": lambda v: b"",
    "whitespace": lambda v: b" \r\n\t ",
    "truncated_half": lambda v: v[: len(v) // 2],
    "truncated_last_byte": lambda v: v[:-1],
    "open_brace": lambda v: b"{",
    "null": lambda v: b"null",
    "empty_array": lambda v: b"[]",
    "array_of_valid": lambda v: b"[" + v + b"]",
    "number": lambda v: b"42",
    "string": lambda v: b'"ok"',
    "true": lambda v: b"true",
    "empty_object": lambda v: b"{}",
    "trailing_garbage": lambda v: v + b" trailing",
    "two_documents": lambda v: v + v,
    "html_error_page": lambda v: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "binary_junk": lambda v: bytes(range(256)) * 4,
    "deep_arrays_100k": lambda v: b"[" * DEEP + b"]" * DEEP,
    "deep_objects_100k": lambda v: b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "deep_unclosed_100k": lambda v: b"[" * DEEP,
    "deep_inside_valid_100k": lambda v: _replace_mark(v, b"[" * DEEP + b"]" * DEEP),
    "huge_string_5mb": lambda v: b'"' + b"a" * 5_000_000 + b'"',
    "huge_number": lambda v: b"1" * 100_000,
    "utf8_stray_byte": lambda v: _replace_mark(v, b'"hel\xfflo"'),
    "utf8_overlong": lambda v: _replace_mark(v, b'"hel\xc0\xaflo"'),
    "utf8_encoded_surrogate": lambda v: _replace_mark(v, b'"hel\xed\xa0\x80lo"'),
    "utf8_truncated_sequence": lambda v: _replace_mark(v, b'"hel\xe2\x82"'),
    "latin1_text": lambda v: _replace_mark(v, '"h\u00e9llo"'.encode("latin-1")),
    "utf16_document": lambda v: v.decode().encode("utf-16"),
    "raw_nul_byte": lambda v: _replace_mark(v, b'"hel\x00lo"'),
    "nan_literal": lambda v: _replace_mark(v, b"NaN"),
    "infinity_literal": lambda v: _replace_mark(v, b"Infinity"),
    "single_quotes": lambda v: _replace_mark(v, b"'hello'"),
    "bad_escape": lambda v: _replace_mark(v, b'"hel\\qlo"'),
    "short_unicode_escape": lambda v: _replace_mark(v, b'"hel\\u12"'),
    "comment": lambda v: _replace_mark(v, b'"hello" /* comment */'),
    "unquoted_key": lambda v: v.replace(b'"note":', b"note:", 1),
}


@pytest.fixture
def client(emu):
    with emu.client(timeout=10.0, max_retries=2) as c:
        yield c


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_control_valid_body_is_accepted(emu, client, endpoint):
    method, path = ROUTES[endpoint]
    emu.inject(method, path, status=200, body=encode(TEMPLATES[endpoint]), times=None)
    result = call(endpoint, client)
    if endpoint == "submit":
        assert result.id == JOB["jobId"] and result.cost == 10.0
    elif endpoint == "job":
        assert result.asset_ids == tuple(JOB["metadata"]["assetIds"])
    elif endpoint == "listing":
        jobs, token = result
        assert [j["jobId"] for j in jobs] == [JOB["jobId"]] and token == "tok123"
    elif endpoint == "asset":
        assert result["id"] == ASSET["id"] and result["note"] == MARK
    else:
        assert result == ASSET["id"]
    assert emu.request_count(method, path) == 1


def _expect_api_error(emu, client, endpoint, body):
    method, path = ROUTES[endpoint]
    emu.inject(method, path, status=200, body=body, times=None)
    with pytest.raises(uni1.APIError) as info:
        call(endpoint, client)
    err = info.value
    assert str(err).startswith("malformed response from server"), str(err)
    assert err.retryable is False
    assert len(str(err)) < 2000  # the message is a summary, never the body
    # A malformed answer is not retried, and a submission is never sent twice.
    assert emu.request_count(method, path) == 1
    assert emu.jobs_created == 0
    return err


@pytest.mark.parametrize("damage", sorted(GENERIC))
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_generic_damage_is_an_api_error(emu, client, endpoint, damage):
    valid = encode(TEMPLATES[endpoint])
    body = GENERIC[damage](valid)
    assert body != valid
    _expect_api_error(emu, client, endpoint, body)


# ------------------------------------------------------------------ per-endpoint damage

REMOVE = object()
HUGE_ID = "job_" + "a" * 1_000_000


def _job_cases():
    """(name, path in the job object, value) breaking a job object."""
    return [
        ("jobId_missing", ("jobId",), REMOVE),
        ("jobId_null", ("jobId",), None),
        ("jobId_number", ("jobId",), 12345),
        ("jobId_array", ("jobId",), ["job_a"]),
        ("jobId_object", ("jobId",), {"id": "job_a"}),
        ("jobId_bool", ("jobId",), True),
        ("jobId_empty", ("jobId",), ""),
        ("jobId_traversal", ("jobId",), "../../etc/x"),
        ("jobId_300_chars", ("jobId",), "job_" + "a" * 296),
        ("jobId_huge_1mb", ("jobId",), HUGE_ID),
        ("jobId_space", ("jobId",), "job_a b"),
        ("jobId_slash", ("jobId",), "job_a/b"),
        ("jobId_non_ascii", ("jobId",), "job_\u00e9t\u00e9"),
        ("jobId_escaped_nul", ("jobId",), "job_a\u0000/../x"),
        ("status_number", ("status",), 7),
        ("status_array", ("status",), ["success"]),
        ("status_object", ("status",), {"name": "success"}),
        ("progress_string", ("progress",), "0.5"),
        ("progress_array", ("progress",), [0.5]),
        ("progress_bool", ("progress",), True),
        ("metadata_string", ("metadata",), "x"),
        ("metadata_array", ("metadata",), []),
        ("metadata_number", ("metadata",), 5),
        ("assetIds_string", ("metadata", "assetIds"), "asset_x"),
        ("assetIds_object", ("metadata", "assetIds"), {"0": "asset_x"}),
        ("assetIds_numbers", ("metadata", "assetIds"), [1, 2]),
        ("assetIds_null_item", ("metadata", "assetIds"), [None]),
        ("assetIds_nested", ("metadata", "assetIds"), [["asset_x"]]),
        ("assetIds_traversal", ("metadata", "assetIds"), ["../../etc/x"]),
        ("assetIds_prefixed_traversal", ("metadata", "assetIds"), ["asset_/../x"]),
        ("assetIds_300_chars", ("metadata", "assetIds"), ["asset_" + "a" * 294]),
        ("assetIds_empty_string", ("metadata", "assetIds"), [""]),
    ]


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    if value is REMOVE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def _wrapped_job_cases(endpoint):
    cases = []
    for name, path, value in _job_cases():
        doc = copy.deepcopy(TEMPLATES[endpoint])
        _set(doc["job"], path, value)
        cases.append((f"{endpoint}-{name}", doc))
    for name, value in (
        ("job_null", None),
        ("job_array", []),
        ("job_string", "job_abc"),
        ("job_number", 5),
        ("job_bool", False),
    ):
        doc = copy.deepcopy(TEMPLATES[endpoint])
        doc["job"] = value
        cases.append((f"{endpoint}-{name}", doc))
    return cases


def _listing_cases():
    base = TEMPLATES["listing"]
    cases = []
    for name, jobs in (
        ("jobs_missing", REMOVE),
        ("jobs_null", None),
        ("jobs_object", {"0": JOB}),
        ("jobs_string", "job_abc"),
        ("jobs_number", 3),
        ("jobs_numbers", [1, 2]),
        ("jobs_null_item", [None]),
        ("jobs_id_strings", [JOB["jobId"]]),
        ("jobs_empty_object_item", [{}]),
        ("jobs_second_item_bad", [JOB, dict(JOB, jobId=None)]),
        ("jobs_item_bad_assetIds", [dict(JOB, metadata=dict(JOB["metadata"], assetIds="x"))]),
    ):
        doc = copy.deepcopy(base)
        _set(doc, ("jobs",), jobs)
        cases.append((f"listing-{name}", doc))
    for name, token in (
        ("token_number", 5),
        ("token_array", ["tok"]),
        ("token_object", {"t": 1}),
        ("token_space", "tok en"),
        ("token_non_ascii", "tok\u00e9"),
        ("token_control", "tok\r\nX-Injected: 1"),
        ("token_too_long", "t" * 20_000),
    ):
        doc = copy.deepcopy(base)
        doc["nextPaginationToken"] = token
        cases.append((f"listing-{name}", doc))
    return cases


def _asset_cases(endpoint):
    cases = []
    for name, path, value in (
        ("id_missing", ("id",), REMOVE),
        ("id_null", ("id",), None),
        ("id_number", ("id",), 5),
        ("id_array", ("id",), ["asset_x"]),
        ("id_empty", ("id",), ""),
        ("id_traversal", ("id",), "../../etc/x"),
        ("id_prefixed_traversal", ("id",), "asset_/../x"),
        ("id_300_chars", ("id",), "asset_" + "a" * 294),
        ("id_escaped_nul", ("id",), "asset_a\u0000/../x"),
        ("url_number", ("url",), 5),
        ("url_array", ("url",), ["http://x/"]),
        ("url_object", ("url",), {"href": "http://x/"}),
        ("url_file_scheme", ("url",), "file:///etc/passwd"),
        ("url_ftp_scheme", ("url",), "ftp://127.0.0.1/x.png"),
        ("url_javascript", ("url",), "javascript:alert(1)"),
        ("url_scheme_relative", ("url",), "//127.0.0.1/x.png"),
        ("url_space", ("url",), "http://127.0.0.1/a b.png"),
        ("url_non_ascii", ("url",), "http://127.0.0.1/\u00e9.png"),
        ("url_crlf", ("url",), "http://127.0.0.1/x.png\r\nAuthorization: leak"),
        ("status_number", ("status",), 5),
        ("status_object", ("status",), {"s": "success"}),
    ):
        doc = copy.deepcopy(TEMPLATES[endpoint])
        _set(doc["asset"], path, value)
        cases.append((f"{endpoint}-{name}", doc))
    for name, value in (
        ("asset_null", None),
        ("asset_array", []),
        ("asset_string", "x"),
        ("asset_number", 1),
    ):
        doc = copy.deepcopy(TEMPLATES[endpoint])
        doc["asset"] = value
        cases.append((f"{endpoint}-{name}", doc))
    return cases


SPECIFIC = (
    _wrapped_job_cases("submit")
    + _wrapped_job_cases("job")
    + _listing_cases()
    + _asset_cases("asset")
    + _asset_cases("upload")
)


@pytest.mark.parametrize("case,doc", SPECIFIC, ids=[c for c, _ in SPECIFIC])
def test_wrong_types_missing_fields_and_nulls_are_api_errors(emu, client, case, doc):
    endpoint = case.split("-", 1)[0]
    err = _expect_api_error(emu, client, endpoint, encode(doc))
    # The message names what was wrong, and never echoes a huge value.
    assert HUGE_ID not in str(err)


def test_progress_too_large_to_represent_is_an_api_error(emu, client):
    body = encode(TEMPLATES["job"]).replace(b'"progress":1.0', b'"progress":1e999')
    assert b"1e999" in body
    _expect_api_error(emu, client, "job", body)


# ------------------------------------------------------------------ through the real flows


def test_malformed_poll_fails_the_wait_at_once(emu, client):
    emu.job_duration = 5
    job = client._submit("x")
    emu.inject("GET", JOB_GET, status=200, body=b'{"job": {"jobId": 5}}', times=None)
    with pytest.raises(uni1.APIError, match="malformed"):
        job.wait(timeout=10)
    assert emu.request_count("GET", JOB_GET) == 1
    assert emu.jobs_created == 1


def test_malformed_asset_fails_the_download_and_leaves_nothing(emu, client, tmp_path):
    emu.job_duration = 0
    job = client._submit("x")
    job.refresh()
    emu.inject(
        "GET", ASSET_GET, status=200, body=b'{"asset": {"id": "asset_x", "url": 7}}', times=None
    )
    dest = tmp_path / "out"
    with pytest.raises(uni1.APIError, match="malformed"):
        job.download(dest)
    assert os.listdir(dest) == []
    with pytest.raises(uni1.APIError, match="malformed"):
        job.images()
    assert emu.request_count(origin="cdn") == 0
    assert emu.jobs_created == 1


LISTINGS_IN_RECONCILIATION = {
    "not_json": b"<html>oops</html>",
    "jobs_missing": b'{"items": []}',
    "jobs_null": b'{"jobs": null}',
    "jobs_object": b'{"jobs": {}}',
    "bad_item": b'{"jobs": [{"jobId": 1}]}',
    "deep": b"[" * DEEP,
}


@pytest.mark.parametrize("name", sorted(LISTINGS_IN_RECONCILIATION))
def test_malformed_listing_during_reconciliation_never_resends(emu, client, name):
    # The POST created a job and its answer was lost; the listing that should
    # find it is garbage. Garbage does not prove "no job": the client must say
    # it cannot tell, and must not pay a second time.
    emu.inject("POST", GEN, action="drop_after", times=1)
    emu.inject("GET", LISTING, status=200, body=LISTINGS_IN_RECONCILIATION[name], times=None)
    with pytest.raises(uni1.SubmissionUncertainError) as info:
        client._submit("lost answer")
    assert info.value.request["prompt"] == "lost answer"
    assert emu.jobs_created == 1
    assert emu.request_count("POST", GEN) == 1


def test_malformed_error_bodies_still_give_the_right_class(emu):
    client = emu.client(timeout=10.0, max_retries=0)
    for status, cls in (
        (401, uni1.AuthenticationError),
        (404, uni1.NotFoundError),
        (503, uni1.ServerError),
    ):
        for body in (
            b"[" * DEEP,
            bytes(range(256)),
            b'{"reason": ' + b'"' + b"r" * 1_000_000 + b'"}',
            b"",
        ):
            emu.clear_faults()
            emu.inject("GET", JOB_GET, status=status, body=body, times=None)
            with pytest.raises(cls) as info:
                client.job("job_abc123")
            assert info.value.status_code == status
            assert len(str(info.value)) < 2000
    client.close()
