"""The emulator on its own, over raw HTTP (http.client), never through the client library.

What is checked here is the REST contract of shared/scenario-api.md as the
emulator plays it, and the test controls (faults, outcomes, clock) that the rest
of the suite relies on to prove retries and exactly-once behaviour.
"""

from __future__ import annotations

import base64
import gc
import http.client
import io
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import scenario_uni1 as uni1
import scenario_uni1.emulator as emulator_mod
from scenario_uni1.emulator import Emulator, images

GENERATE = "/v1/generate/custom/model_luma-uni-1-max"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RATIOS = ("1:3", "9:16", "2:3", "3:4", "1:1", "4:3", "3:2", "16:9", "3:1")
PACKAGE_ROOT = str(Path(emulator_mod.__file__).resolve().parents[2])


# ------------------------------------------------------------------ helpers


def basic(key="emu-key", secret="emu-secret"):
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class Reply:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data

    @property
    def json(self):
        return json.loads(self.data)


def call(emu, method, path, body=None, *, auth=True, headers=None, raw=None, timeout=5.0):
    """One request to the API origin on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=timeout)
    try:
        hdrs = {"Accept": "application/json"}
        if auth is True:
            hdrs["Authorization"] = basic(emu.api_key, emu.api_secret)
        elif auth:
            hdrs["Authorization"] = auth
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def fetch(url, method="GET", headers=None, timeout=5.0):
    """One request to an absolute URL (the CDN), without credentials."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn.request(method, target, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def put(url, data, timeout=10.0):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("PUT", parts.path + "?" + parts.query, body=data)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def submit(emu, **body):
    body.setdefault("prompt", "a lighthouse at dusk")
    reply = call(emu, "POST", GENERATE, body)
    assert reply.status == 200, reply.data
    return reply.json["job"]["jobId"]


def get_job(emu, job_id):
    reply = call(emu, "GET", "/v1/jobs/" + job_id)
    assert reply.status == 200, reply.data
    return reply.json["job"]


def finished_asset(emu, **body):
    """Run a job to success (job_duration must be 0) and return its asset JSON."""
    job = get_job(emu, submit(emu, **body))
    assert job["status"] == "success"
    reply = call(emu, "GET", "/v1/assets/" + job["metadata"]["assetIds"][0])
    assert reply.status == 200
    return reply.json["asset"]


def png(width, height):
    return images.encode_png(width, height, images.pixels_rgb(width, height, 7))


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def emu():
    with Emulator(job_duration=0) as e:
        yield e


# ------------------------------------------------------------------ lifecycle of the server


def test_start_stop_are_fast_idempotent_and_clean():
    before = {t.name for t in threading.enumerate()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        e = Emulator()
        t0 = time.perf_counter()
        e.start()
        started = time.perf_counter() - t0
        e.start()  # idempotent
        assert e.url == f"http://127.0.0.1:{e.port}/v1"
        assert e.cdn_url == f"http://127.0.0.1:{e.cdn_port}"
        assert e.port != e.cdn_port
        idle = socket.create_connection(("127.0.0.1", e.port))  # left open on purpose
        assert call(e, "GET", "/v1/jobs").status == 200
        e.stop()
        e.stop()
        assert idle.recv(10) == b""  # the server closed it
        idle.close()
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert {t.name for t in threading.enumerate()} == before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", e.port), timeout=1).close()
    print(f"\nemulator start: {started * 1000:.1f} ms")
    assert started < 0.5  # generous: the goal is < 50 ms


# ------------------------------------------------------------------ auth


def test_auth_is_required_basic_or_bearer():
    with Emulator(bearer_token="tok-123", job_duration=0) as e:
        assert call(e, "GET", "/v1/jobs", auth=False).status == 401
        bad = call(e, "GET", "/v1/jobs", auth=basic("emu-key", "wrong"))
        assert bad.status == 401 and bad.json == {"reason": "Unauthorized"}
        assert call(e, "GET", "/v1/jobs", auth="Bearer nope").status == 401
        assert call(e, "POST", GENERATE, {"prompt": "x"}, auth=False).status == 401
        assert e.jobs_created == 0
        assert call(e, "GET", "/v1/jobs", auth="Bearer tok-123").status == 200
        assert call(e, "GET", "/v1/jobs").status == 200
        # the scheme is case-insensitive
        assert call(e, "GET", "/v1/jobs", auth="basic " + basic()[6:]).status == 200
        # credentials can be changed on a running emulator
        e.api_secret = "rotated"
        assert call(e, "GET", "/v1/jobs", auth=basic()).status == 401
        assert call(e, "GET", "/v1/jobs", auth=basic("emu-key", "rotated")).status == 200
    with Emulator() as e:  # no bearer token configured: every bearer is refused
        assert call(e, "GET", "/v1/jobs", auth="Bearer ").status == 401


def test_project_id_is_accepted_and_recorded(emu):
    job_id = submit_with_query(emu, "?projectId=proj_42")
    assert get_job(emu, job_id)["ownerId"] == "proj_42"
    rec = next(r for r in emu.requests if r.method == "POST")
    assert rec.query == {"projectId": "proj_42"}
    assert rec.headers["authorization"].startswith("Basic ")
    assert rec.json() == {"prompt": "x"}
    assert emu.request_count("POST", r"^/v1/generate/") == 1


def submit_with_query(emu, query):
    reply = call(emu, "POST", GENERATE + query, {"prompt": "x"})
    assert reply.status == 200
    return reply.json["job"]["jobId"]


# ------------------------------------------------------------------ generate: validation


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": 12},
        {"prompt": "x" * 6001},
        {"prompt": "x", "aspectRatio": "5:4"},
        {"prompt": "x", "outputFormat": "webp"},
        {"prompt": "x", "webSearch": "yes"},
        {"prompt": "x", "imageRef": {"a": 1}},
        {"prompt": "x", "imageRef": [1]},
        {"prompt": "x", "source": 5},
    ],
)
def test_generate_rejects_invalid_bodies(emu, body):
    reply = call(emu, "POST", GENERATE, body)
    assert reply.status == 400
    assert isinstance(reply.json.get("reason"), str)
    assert emu.jobs_created == 0


def test_generate_rejects_bad_json_and_unknown_model(emu):
    bad = call(emu, "POST", GENERATE, raw=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status == 400 and "reason" in bad.json
    arr = call(emu, "POST", GENERATE, ["prompt"])
    assert arr.status == 400
    missing = call(emu, "POST", "/v1/generate/custom/model_nope", {"prompt": "x"})
    assert missing.status == 404 and "message" in missing.json
    assert call(emu, "GET", "/v1/nothing").status == 404
    assert emu.jobs_created == 0


def test_prompt_of_6000_characters_is_accepted_untrimmed(emu):
    prompt = "é" * 6000
    job = get_job(emu, submit(emu, prompt=prompt))
    assert job["metadata"]["input"]["prompt"] == prompt


def test_reference_limits(emu):
    ids = [emu.add_asset(png(8, 8)) for _ in range(10)]
    assert call(emu, "POST", GENERATE, {"prompt": "x", "imageRef": ids}).status == 400
    assert call(emu, "POST", GENERATE, {"prompt": "x", "imageRef": ids[:9]}).status == 200
    with_source = {"prompt": "x", "source": ids[9], "imageRef": ids[:9]}
    assert call(emu, "POST", GENERATE, with_source).status == 400
    with_source["imageRef"] = ids[:8]
    ok = call(emu, "POST", GENERATE, with_source)
    assert ok.status == 200
    assert ok.json["creativeUnitsCost"] == 10 + 2 * 9
    assert ok.json["job"]["billing"]["cuCost"] == 10 + 2 * 9
    assert emu.jobs_created == 2


def test_image_ref_as_bare_string_is_silently_dropped(emu):
    asset_id = emu.add_asset(png(8, 8))
    reply = call(emu, "POST", GENERATE, {"prompt": "x", "imageRef": asset_id})
    assert reply.status == 200
    assert reply.json["creativeUnitsCost"] == 10  # no reference was charged
    assert reply.json["job"]["metadata"]["input"]["imageRef"] == asset_id  # input as received
    # even an unknown id in a bare string goes unnoticed
    assert call(emu, "POST", GENERATE, {"prompt": "x", "imageRef": "asset_nope"}).status == 200


def test_unknown_asset_in_references_is_404(emu):
    known = emu.add_asset(png(8, 8))
    reply = call(emu, "POST", GENERATE, {"prompt": "x", "imageRef": [known, "asset_missing"]})
    assert reply.status == 404 and "asset_missing" in reply.json["reason"]
    assert call(emu, "POST", GENERATE, {"prompt": "x", "source": "asset_missing"}).status == 404
    assert emu.jobs_created == 0


def test_dry_run_quotes_with_269_and_creates_nothing(emu):
    refs = [emu.add_asset(png(8, 8)) for _ in range(3)]
    reply = call(emu, "POST", GENERATE + "?dryRun=true", {"prompt": "x", "imageRef": refs})
    assert reply.status == 269
    assert reply.json["creativeUnitsCost"] == 16
    assert reply.json["creativeUnitsDiscount"] == 0
    assert isinstance(reply.json["costDetails"], dict)
    assert "job" not in reply.json
    assert emu.jobs_created == 0 and emu.jobs == {}
    # validation still applies to a dry run
    assert call(emu, "POST", GENERATE + "?dryRun=true", {"prompt": ""}).status == 400
    # dryRun in the body is ignored: a real (paid) job runs
    paid = call(emu, "POST", GENERATE, {"prompt": "x", "dryRun": True})
    assert paid.status == 200 and "jobId" in paid.json["job"]
    assert emu.jobs_created == 1


# ------------------------------------------------------------------ jobs


def test_job_lifecycle_history_and_uneven_progress(emu):
    emu.job_duration = 10.0
    reply = call(emu, "POST", GENERATE, {"prompt": "x", "aspectRatio": "16:9"})
    created = reply.json["job"]
    assert re.fullmatch(r"job_[A-Za-z0-9]{24}", created["jobId"])
    assert created["jobType"] == "custom"
    assert created["status"] == "queued" and created["progress"] == 0
    assert created["modelId"] == "model_luma-uni-1-max"  # an extra field clients must keep
    assert created["metadata"]["input"] == {"prompt": "x", "aspectRatio": "16:9"}
    assert created["metadata"]["error"] is None and created["metadata"]["assetIds"] == []
    assert set(created["billing"]) == {"cuCost", "cuDiscount", "disableRefund"}
    for key in ("authorId", "ownerId", "createdAt", "updatedAt"):
        assert created[key]

    seen = []
    for _ in range(42):
        job = get_job(emu, created["jobId"])
        seen.append((job["status"], job["progress"]))
        emu.advance(0.25)
    order = ["queued", "warming-up", "in-progress", "finalizing", "success"]
    statuses = [s for s, _ in seen]
    assert [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s] == order
    progress = [p for _, p in seen]
    assert progress == sorted(progress) and progress[-1] == 1.0
    moving = sorted({p for s, p in seen if s == "in-progress"})
    assert len(moving) >= 4 and 0 < moving[-1] < 1
    steps = {round(b - a, 3) for a, b in itertools.pairwise(moving)}
    assert len(steps) > 1  # uneven

    job = get_job(emu, created["jobId"])
    history = job["statusHistory"]
    assert [h["status"] for h in history] == order
    assert all(ISO_MS.match(h["date"]) for h in history)
    assert [h["date"] for h in history] == sorted(h["date"] for h in history)
    assert ISO_MS.match(job["createdAt"]) and job["updatedAt"] == history[-1]["date"]
    assert len(job["metadata"]["assetIds"]) == 1
    assert job["metadata"]["assetIds"][0].startswith("asset_")


def test_job_runs_on_the_real_clock():
    with Emulator(job_duration=0.3) as e:
        job_id = submit(e)
        assert get_job(e, job_id)["status"] != "success"
        deadline = time.monotonic() + 3
        while get_job(e, job_id)["status"] != "success":
            assert time.monotonic() < deadline
            time.sleep(0.05)


def _first_run(**kw):
    """Ids, upload id and image bytes of a new emulator's first job."""
    with Emulator(job_duration=0, **kw) as e:
        job = get_job(e, submit(e))
        asset_id = job["metadata"]["assetIds"][0]
        asset = call(e, "GET", "/v1/assets/" + asset_id).json["asset"]
        return job["jobId"], asset_id, fetch(asset["url"]).data


def test_ids_differ_on_every_start_unless_seeded():
    # Files are named after asset ids: equal ids on every start made the second
    # `generate --offline -o DIR` collide with the first one's file.
    runs = [_first_run() for _ in range(3)]
    assert len({r[0] for r in runs}) == 3 and len({r[1] for r in runs}) == 3
    seeded = [_first_run(seed=1234) for _ in range(2)]
    assert seeded[0] == seeded[1]  # same job id, asset id and image bytes
    assert seeded[0][0] not in {r[0] for r in runs}
    assert _first_run(seed=1235)[0] != seeded[0][0]


def test_unknown_job_is_404(emu):
    reply = call(emu, "GET", "/v1/jobs/job_doesnotexist")
    assert reply.status == 404 and "reason" in reply.json


def test_listing_is_newest_first_and_paginated(emu):
    ids = []
    for _ in range(5):
        ids.append(submit(emu))
        emu.advance(1)
    expected = list(reversed(ids))
    got = []
    token = None
    pages = 0
    while True:
        query = "?pageSize=2" + (f"&paginationToken={token}" if token else "")
        page = call(emu, "GET", "/v1/jobs" + query).json
        got += [j["jobId"] for j in page["jobs"]]
        pages += 1
        token = page.get("nextPaginationToken")
        if not token:
            assert "nextPaginationToken" not in page
            break
    assert got == expected and pages == 3
    assert call(emu, "GET", "/v1/jobs?paginationToken=garbage").status == 400
    assert call(emu, "GET", "/v1/jobs?pageSize=0").status == 400
    everything = call(emu, "GET", "/v1/jobs").json
    assert [j["jobId"] for j in everything["jobs"]] == expected
    assert "nextPaginationToken" not in everything
    assert len(call(emu, "GET", "/v1/jobs?status=success").json["jobs"]) == 5
    assert call(emu, "GET", "/v1/jobs?status=failure").json["jobs"] == []
    assert len(call(emu, "GET", "/v1/jobs?type=custom").json["jobs"]) == 5
    assert call(emu, "GET", "/v1/jobs?type=inference").json["jobs"] == []


def test_cancel_is_refused_for_custom_jobs(emu):
    emu.job_duration = 10
    job_id = submit(emu)
    reply = call(emu, "POST", f"/v1/jobs/{job_id}/action", {"action": "cancel"})
    assert reply.status == 400
    assert reply.json == {"reason": "Cannot cancel this type of job. Action not permitted."}
    assert call(emu, "POST", "/v1/jobs/job_nope/action", {"action": "cancel"}).status == 404
    emu.cancellable = True  # a knob to exercise the other branch of a client
    ok = call(emu, "POST", f"/v1/jobs/{job_id}/action", {"action": "cancel"})
    assert ok.status == 200 and ok.json["job"]["status"] == "canceled"
    assert get_job(emu, job_id)["status"] == "canceled"


def test_next_job_outcomes(emu):
    emu.next_job_outcome("failure", error="Luma said no", hint="Try a shorter prompt")
    emu.next_job_outcome("canceled")
    emu.next_job_outcome("stuck")
    failed = get_job(emu, submit(emu))
    assert failed["status"] == "failure"
    assert failed["metadata"]["error"] == "Luma said no"
    assert failed["metadata"]["hint"] == "Try a shorter prompt"
    assert failed["metadata"]["assetIds"] == []
    assert [h["status"] for h in failed["statusHistory"]][-1] == "failure"
    assert get_job(emu, submit(emu))["status"] == "canceled"
    stuck = submit(emu)
    emu.advance(10**6)
    assert get_job(emu, stuck)["status"] == "in-progress"
    assert get_job(emu, submit(emu))["status"] == "success"  # the queue is used up
    snapshot = emu.jobs[stuck]
    snapshot["status"] = "changed by a test"
    assert emu.job(stuck)["status"] == "in-progress"  # callers get copies


def test_too_many_jobs_in_flight_is_429():
    with Emulator(job_duration=5, max_jobs_in_flight=2) as e:
        submit(e)
        submit(e)
        reply = call(e, "POST", GENERATE, {"prompt": "x"})
        assert reply.status == 429
        assert reply.json["details"] == {"actionName": "generate", "actionLimit": 2}
        assert e.jobs_created == 2
        e.advance(6)
        assert call(e, "POST", GENERATE, {"prompt": "x"}).status == 200


def _post_all_at_once(emu, n):
    """n POSTs of generate, each on its own connection, released together."""
    barrier = threading.Barrier(n)
    replies = [None] * n

    def one(k):
        barrier.wait()
        replies[k] = call(emu, "POST", GENERATE, {"prompt": f"concurrent {k}"})

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return replies


def test_concurrency_ceiling_refuses_the_third_concurrent_post():
    with Emulator(job_duration=0.6) as e:
        e.max_in_flight = 2  # the knob's other name, set on a running emulator
        assert e.max_jobs_in_flight == 2 and e.stats()["knobs"]["max_jobs_in_flight"] == 2
        replies = _post_all_at_once(e, 3)
        assert sorted(r.status for r in replies) == [200, 200, 429]
        refused = next(r for r in replies if r.status == 429)
        assert refused.json == {
            "reason": "Too many jobs in progress",
            "details": {"actionName": "generate", "actionLimit": 2},
        }
        # Nothing created, nothing billed: two jobs, two charges, no asset.
        assert e.jobs_created == 2 and len(e.jobs) == 2 and e.assets == {}
        ids = [r.json["job"]["jobId"] for r in replies if r.status == 200]
        assert sum(r.json["creativeUnitsCost"] for r in replies if r.status == 200) == 20
        assert call(e, "POST", GENERATE, {"prompt": "still full"}).status == 429
        deadline = time.monotonic() + 10
        while get_job(e, ids[0])["status"] != "success":  # real time, no advance()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        reply = call(e, "POST", GENERATE, {"prompt": "a slot is free"})
        assert reply.status == 200, reply.data
        assert e.jobs_created == 3


def test_concurrency_ceiling_set_late_counts_the_jobs_already_in_flight():
    with Emulator(job_duration=30) as e:
        submit(e)
        submit(e)
        e.max_jobs_in_flight = 2
        reply = call(e, "POST", GENERATE, {"prompt": "x"})
        assert reply.status == 429, reply.data
        assert reply.json["details"] == {"actionName": "generate", "actionLimit": 2}
        assert e.jobs_created == 2
        e.max_jobs_in_flight = None
        assert call(e, "POST", GENERATE, {"prompt": "x"}).status == 200


def test_concurrency_ceiling_and_our_client_retries_the_post_then_gives_up():
    # Today the client treats this 429 like any other: the POST created nothing, so it
    # is resent after a backoff, max_retries times, without reconciling by listing.
    with Emulator(job_duration=0.2, max_jobs_in_flight=1) as e:
        e.next_job_outcome("stuck")
        submit(e)  # holds the only slot for ever
        e.clear_requests()
        with e.client(max_retries=2, backoff_base=0.02, backoff_max=0.2, timeout=10) as client:
            with pytest.raises(uni1.RateLimitError) as info:
                client._submit("over the ceiling")
        assert info.value.status_code == 429
        assert "Too many jobs in progress" in str(info.value)
        assert e.request_count("POST", GENERATE) == 3  # the first try and 2 retries
        assert e.request_count("GET", r"^/v1/jobs/?$") == 0
        assert e.jobs_created == 1


def test_emulator_command_takes_the_concurrency_ceiling(monkeypatch):
    import scenario_uni1.emulator.command as command

    seen = []
    monkeypatch.setattr(command, "serve", lambda *a, **kw: seen.append(kw))
    assert emulator_mod.main(["--port", "0", "--max-in-flight", "3"]) == 0
    assert emulator_mod.main(["--port", "0"]) == 0
    assert [kw["max_jobs_in_flight"] for kw in seen] == [3, None]


# ------------------------------------------------------------------ assets and the CDN


def test_asset_json_and_cdn_download(emu):
    asset = finished_asset(emu)
    assert re.fullmatch(r"asset_[A-Za-z0-9]{24}", asset["id"])
    assert asset["kind"] == "image" and asset["status"] == "success"
    assert asset["mimeType"] == "image/png"
    meta = asset["metadata"]
    assert (meta["width"], meta["height"]) == (256, 171)  # 3:2 by default
    assert asset["properties"] == {"size": meta["size"], "width": 256, "height": 171}
    url = urlsplit(asset["url"])
    assert f"{url.scheme}://{url.netloc}" == emu.cdn_url
    assert set(parse_qs(url.query)) == {"Policy", "Signature", "Key-Pair-Id"}
    got = fetch(asset["url"])
    assert got.status == 200
    assert got.headers["content-type"] == "image/png"
    assert int(got.headers["content-length"]) == len(got.data) == meta["size"]
    head = fetch(asset["url"], method="HEAD")
    assert head.status == 200 and head.data == b""
    assert int(head.headers["content-length"]) == meta["size"]
    assert emu.cdn_authorization_seen == 0
    assert emu.request_count(origin="cdn") == 2
    fetch(asset["url"], headers={"Authorization": basic()})
    assert emu.cdn_authorization_seen == 1  # what tests of the client assert never happens
    assert call(emu, "GET", "/v1/assets/asset_nope").status == 404


def test_signed_url_is_refused_when_altered_or_expired(emu):
    asset = finished_asset(emu)
    url = asset["url"]
    sig = parse_qs(urlsplit(url).query)["Signature"][0]
    altered_sig = url.replace(sig, ("A" if sig[0] != "A" else "B") + sig[1:])
    for bad in (
        altered_sig,
        url.replace("/original.png", "/original.jpg"),
        url.replace(asset["id"], "asset_" + "x" * 24),
        url.split("?")[0],
    ):
        reply = fetch(bad)
        assert reply.status == 403, bad
        assert b"<Error><Code>" in reply.data
    denied = fetch(altered_sig)
    assert b"AccessDenied" in denied.data and "xml" in denied.headers["content-type"]
    assert fetch(url).status == 200

    emu.advance(86400 + 1)  # past url_ttl
    assert fetch(url).status == 403
    fresh = call(emu, "GET", "/v1/assets/" + asset["id"]).json["asset"]["url"]
    assert fetch(fresh).status == 200  # GET the asset again to refresh

    emu.expire_urls()
    assert fetch(fresh).status == 403
    again = call(emu, "GET", "/v1/assets/" + asset["id"]).json["asset"]["url"]
    assert fetch(again).status == 200


def test_short_url_ttl():
    with Emulator(job_duration=0, url_ttl=5) as e:
        asset = finished_asset(e)
        assert fetch(asset["url"]).status == 200
        e.advance(6)
        assert fetch(asset["url"]).status == 403


def test_range_requests(emu):
    asset = finished_asset(emu)
    full = fetch(asset["url"]).data
    n = len(full)
    tail = fetch(asset["url"], headers={"Range": "bytes=100-"})
    assert tail.status == 206
    assert tail.headers["content-range"] == f"bytes 100-{n - 1}/{n}"
    assert tail.data == full[100:] and int(tail.headers["content-length"]) == n - 100
    middle = fetch(asset["url"], headers={"Range": "bytes=10-19"})
    assert middle.status == 206 and middle.data == full[10:20]
    suffix = fetch(asset["url"], headers={"Range": "bytes=-5"})
    assert suffix.status == 206 and suffix.data == full[-5:]
    past = fetch(asset["url"], headers={"Range": f"bytes={n}-"})
    assert past.status == 416 and past.headers["content-range"] == f"bytes */{n}"
    assert fetch(asset["url"], headers={"Range": "items=1-2"}).status == 200


def test_asset_size_padding_gives_exact_big_decodable_files():
    PIL = pytest.importorskip("PIL.Image")
    size = 3 * 1024 * 1024 + 123
    with Emulator(job_duration=0, asset_size_bytes=size) as e:
        asset = finished_asset(e)
        assert asset["metadata"]["size"] == size
        got = fetch(asset["url"])
        assert len(got.data) == size
        img = PIL.open(io.BytesIO(got.data))
        img.load()
        assert img.size == (256, 171)
        part = fetch(asset["url"], headers={"Range": f"bytes={size - 10}-"})
        assert part.data == got.data[-10:]


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_outputs_are_real_images_of_every_ratio(emu, fmt):
    PIL = pytest.importorskip("PIL.Image")
    for ratio in RATIOS:
        asset = finished_asset(emu, aspectRatio=ratio, outputFormat=fmt)
        got = fetch(asset["url"])
        assert got.headers["content-type"] == f"image/{fmt}"
        assert asset["mimeType"] == f"image/{fmt}"
        img = PIL.open(io.BytesIO(got.data))
        img.load()
        assert img.format == fmt.upper()
        w, h = img.size
        assert max(w, h) == 256
        a, b = (int(x) for x in ratio.split(":"))
        assert abs(w / h - a / b) < 0.02 * (a / b), (ratio, img.size)
        assert (asset["metadata"]["width"], asset["metadata"]["height"]) == (w, h)


def test_outputs_differ_per_job_and_outputs_per_job(emu):
    first = fetch(finished_asset(emu)["url"]).data
    second = fetch(finished_asset(emu)["url"]).data
    assert first != second
    emu.outputs_per_job = 3
    job = get_job(emu, submit(emu))
    assert len(job["metadata"]["assetIds"]) == 3


def test_edit_keeps_the_source_aspect_ratio(emu):
    source = emu.add_asset(png(100, 300), name="tall.png")
    edited = finished_asset(emu, source=source)
    assert (edited["metadata"]["width"], edited["metadata"]["height"]) == (85, 256)
    forced = finished_asset(emu, source=source, aspectRatio="16:9")
    assert (forced["metadata"]["width"], forced["metadata"]["height"]) == (256, 144)


def test_download_in_another_format(emu):
    PIL = pytest.importorskip("PIL.Image")
    asset = finished_asset(emu)
    reply = call(emu, "POST", f"/v1/assets/{asset['id']}/download", {"targetFormat": "webp"})
    assert reply.status == 200 and set(reply.json) == {"url"}
    got = fetch(reply.json["url"])
    assert got.status == 200 and got.headers["content-type"] == "image/webp"
    assert PIL.open(io.BytesIO(got.data)).format == "WEBP"
    jpg = call(emu, "POST", f"/v1/assets/{asset['id']}/download", {"targetFormat": "jpeg"})
    assert PIL.open(io.BytesIO(fetch(jpg.json["url"]).data)).format == "JPEG"
    assert (
        call(emu, "POST", f"/v1/assets/{asset['id']}/download", {"targetFormat": "doc"}).status
        == 400
    )
    assert (
        call(emu, "POST", "/v1/assets/asset_nope/download", {"targetFormat": "png"}).status == 404
    )


def test_pure_python_jpeg_encoder_decodes():
    PIL = pytest.importorskip("PIL.Image")
    w, h = 37, 21  # not multiples of 8
    rgb = images.pixels_rgb(w, h, 3)
    img = PIL.open(io.BytesIO(images.encode_jpeg_pure(w, h, rgb)))
    img.load()
    assert img.size == (w, h) and img.mode == "RGB"
    got = img.tobytes()
    mean_error = sum(abs(a - b) for a, b in zip(got, rgb)) / len(rgb)
    assert mean_error < 8


def test_emulator_serves_jpeg_without_pillow(tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    child = (
        "import sys, base64, json, http.client\n"
        "sys.modules['PIL'] = None\n"
        "from scenario_uni1.emulator import Emulator\n"
        "auth = {'Authorization': 'Basic ' + base64.b64encode(b'emu-key:emu-secret').decode(),\n"
        "        'Content-Type': 'application/json'}\n"
        "with Emulator(job_duration=0) as e:\n"
        "    c = http.client.HTTPConnection('127.0.0.1', e.port)\n"
        "    def go(m, p, b=None):\n"
        "        c.request(m, p, body=json.dumps(b) if b else None, headers=auth)\n"
        "        return json.loads(c.getresponse().read())\n"
        "    job = go('POST', '/v1/generate/custom/model_luma-uni-1-max',\n"
        "             {'prompt': 'x', 'outputFormat': 'jpeg', 'aspectRatio': '9:16'})['job']\n"
        "    job = go('GET', '/v1/jobs/' + job['jobId'])['job']\n"
        "    url = go('GET', '/v1/assets/' + job['metadata']['assetIds'][0])['asset']['url']\n"
        "    d = http.client.HTTPConnection('127.0.0.1', e.cdn_port)\n"
        "    d.request('GET', url.split(str(e.cdn_port), 1)[1])\n"
        "    sys.stdout.buffer.write(d.getresponse().read())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        check=False,
        capture_output=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr.decode()
    img = PIL.open(io.BytesIO(out.stdout))
    img.load()
    assert img.format == "JPEG" and img.size == (144, 256)


# ------------------------------------------------------------------ uploads


def test_small_upload_data_url_and_raw_base64(emu):
    data = png(64, 32)
    b64 = base64.b64encode(data).decode()
    for image in ("data:image/png;base64," + b64, b64):
        reply = call(emu, "POST", "/v1/assets", {"image": image, "name": "red.png"})
        assert reply.status == 200, reply.data
        asset = reply.json["asset"]
        assert re.fullmatch(r"asset_[A-Za-z0-9]+", asset["id"])
        assert (asset["metadata"]["width"], asset["metadata"]["height"]) == (64, 32)
        assert asset["metadata"]["name"] == "red.png"
        assert asset["mimeType"] == "image/png"
        assert fetch(asset["url"]).data == data
    jpeg = images.encode_jpeg_pure(20, 10, images.pixels_rgb(20, 10, 1))
    reply = call(emu, "POST", "/v1/assets", {"image": base64.b64encode(jpeg).decode()})
    assert reply.json["asset"]["mimeType"] == "image/jpeg"
    assert reply.json["asset"]["properties"]["width"] == 20


def test_small_upload_rejections(emu):
    assert call(emu, "POST", "/v1/assets", {"image": "!!!not base64!!!"}).status == 400
    not_image = base64.b64encode(b"hello, world").decode()
    assert call(emu, "POST", "/v1/assets", {"image": not_image}).status == 400
    assert call(emu, "POST", "/v1/assets", {"name": "x.png"}).status == 400
    big = {"image": "A" * (10 * 1024 * 1024 + 10)}
    reply = call(emu, "POST", "/v1/assets", big)
    assert reply.status == 413 and "message" in reply.json
    assert emu.assets == {}


def test_expect_100_continue_chunked_and_pipelining(emu):
    body = json.dumps({"prompt": "x"}).encode()
    auth = basic()
    pending = bytearray()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as s:
        s.sendall(
            (
                f"POST {GENERATE} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\n\r\n"
            ).encode()
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert recv_response(s, pending)[0] == 200
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        get = f"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode()
        s.sendall(
            (
                f"POST {GENERATE} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
            + chunked
            + get
        )
        assert recv_response(s, pending)[0] == 200
        status, data = recv_response(s, pending)
        assert status == 200 and len(json.loads(data)["jobs"]) == 2
        assert not pending
    assert emu.jobs_created == 2


def recv_response(sock, pending: bytearray):
    """(status, body) of the next response on sock; bytes beyond it stay in `pending`."""
    buf = pending
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end])
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(buf) < end + length:
        buf += sock.recv(65536)
    body = bytes(buf[end : end + length])
    del buf[: end + length]
    return int(head.split()[1]), body


def test_multipart_upload_flow(emu):
    PIL = pytest.importorskip("PIL.Image")
    data = images.generated_image(120, 80, "png", 9, pad_to=7 * 1024 * 1024).tobytes()
    body = {
        "fileName": "big.png",
        "contentType": "image/png",
        "kind": "image",
        "parts": 2,
        "fileSize": len(data),
    }
    upload = call(emu, "POST", "/v1/uploads", body).json["upload"]
    assert upload["status"] == "pending" and len(upload["parts"]) == 2
    assert [p["number"] for p in upload["parts"]] == [1, 2]
    assert all(p["url"].startswith(emu.cdn_url) for p in upload["parts"])
    # completing with a part missing is refused
    action = f"/v1/uploads/{upload['id']}/action"
    cut = 5 * 1024 * 1024
    assert put(upload["parts"][0]["url"], data[:cut]).status == 200
    assert call(emu, "POST", action, {"action": "complete"}).status == 400
    tampered = upload["parts"][1]["url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert put(tampered, data[cut:]).status == 403
    reply = put(upload["parts"][1]["url"], data[cut:])
    assert reply.status == 200 and reply.headers["etag"]
    done = call(emu, "POST", action, {"action": "complete"})
    assert done.status == 200 and done.json["upload"]["status"] == "validating"
    seen = ["pending", "validating"]
    deadline = time.monotonic() + 5
    while seen[-1] != "imported":
        assert time.monotonic() < deadline
        state = call(emu, "GET", "/v1/uploads/" + upload["id"]).json["upload"]
        if state["status"] != seen[-1]:
            seen.append(state["status"])
        time.sleep(0.02)
    assert seen == ["pending", "validating", "validated", "imported"]
    asset = call(emu, "GET", "/v1/assets/" + state["entityId"]).json["asset"]
    assert (asset["metadata"]["width"], asset["metadata"]["height"]) == (120, 80)
    got = fetch(asset["url"]).data
    assert got == data
    assert PIL.open(io.BytesIO(got)).size == (120, 80)
    assert not any("authorization" in r.headers for r in emu.requests if r.method == "PUT")


def test_multipart_upload_with_a_small_part_fails(emu):
    data = png(64, 64)
    upload = call(emu, "POST", "/v1/uploads", {"fileName": "a.png", "parts": 2}).json["upload"]
    put(upload["parts"][0]["url"], data[:100])
    put(upload["parts"][1]["url"], data[100:])
    call(emu, "POST", f"/v1/uploads/{upload['id']}/action", {"action": "complete"})
    emu.advance(5)
    state = call(emu, "GET", "/v1/uploads/" + upload["id"]).json["upload"]
    assert state["status"] == "failed" and "5 MiB" in state["errorMessage"]
    assert "entityId" not in state
    assert call(emu, "GET", "/v1/uploads/upload_nope").status == 404


# ------------------------------------------------------------------ faults


def test_fault_status_applies_exactly_times(emu):
    job_id = submit(emu)
    fault = emu.inject(
        "GET",
        r"^/v1/jobs/",
        status=429,
        body={"reason": "slow down", "remainingSeconds": 1},
        headers={"Retry-After": "1"},
        times=2,
    )
    for _ in range(2):
        reply = call(emu, "GET", "/v1/jobs/" + job_id)
        assert reply.status == 429 and reply.headers["retry-after"] == "1"
        assert reply.json["remainingSeconds"] == 1
    assert call(emu, "GET", "/v1/jobs/" + job_id).status == 200
    assert fault.hits == 2 and emu.faults == []
    assert call(emu, "GET", "/v1/jobs").status == 200  # the regex never matched
    recorded = [r.fault for r in emu.requests if r.path.startswith("/v1/jobs/")]
    assert recorded == ["respond", "respond", None]


def test_fault_default_body_text_body_and_headers_only(emu):
    emu.inject("GET", r"^/v1/jobs$", status=503)
    reply = call(emu, "GET", "/v1/jobs")
    assert reply.status == 503 and reply.json == {"reason": "Service Unavailable"}
    emu.inject("GET", r"^/v1/jobs$", status=502, body="<html>bad gateway</html>")
    reply = call(emu, "GET", "/v1/jobs")
    assert reply.status == 502 and reply.data == b"<html>bad gateway</html>"
    emu.inject("GET", r"^/v1/jobs$", headers={"X-Trace": "t-1"})
    reply = call(emu, "GET", "/v1/jobs")
    assert reply.status == 200 and reply.headers["x-trace"] == "t-1"
    with pytest.raises(ValueError):
        emu.inject("GET", action="explode")


def test_fault_drop_before_processes_nothing(emu):
    emu.inject("POST", r"^/v1/generate/", action="drop_before")
    with pytest.raises(ConnectionError):
        call(emu, "POST", GENERATE, {"prompt": "x"})
    assert emu.jobs_created == 0
    assert emu.request_count("POST", r"/generate/") == 1
    assert emu.requests[-1].fault == "drop_before"
    submit(emu)
    assert emu.jobs_created == 1


def test_fault_drop_after_processes_then_hangs_up(emu):
    emu.inject("POST", r"^/v1/generate/", action="drop_after")
    with pytest.raises(ConnectionError):
        call(emu, "POST", GENERATE, {"prompt": "paid but unanswered"})
    assert emu.jobs_created == 1  # the job exists: a blind retry would pay twice
    (job,) = emu.jobs.values()
    assert job["metadata"]["input"]["prompt"] == "paid but unanswered"
    listed = call(emu, "GET", "/v1/jobs").json["jobs"]
    assert [j["jobId"] for j in listed] == [job["jobId"]]


def test_fault_truncate_and_stall_on_the_cdn(emu):
    asset = finished_asset(emu)
    size = asset["metadata"]["size"]
    emu.inject(origin="cdn", action="truncate")
    parts = urlsplit(asset["url"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", parts.path + "?" + parts.query)
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) == size
    with pytest.raises(http.client.IncompleteRead) as info:
        resp.read()
    assert len(info.value.partial) == size // 2
    conn.close()

    emu.inject(origin="cdn", action="stall")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=0.5)
    conn.request("GET", parts.path + "?" + parts.query)
    resp = conn.getresponse()
    assert resp.status == 200
    assert len(resp.read(100)) == 100
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        resp.read()
    assert time.monotonic() - t0 >= 0.4
    conn.close()
    assert fetch(asset["url"]).status == 200  # faults used up


def test_fault_stall_and_truncate_on_the_api(emu):
    emu.inject("GET", r"^/v1/jobs$", action="truncate")
    with pytest.raises(http.client.IncompleteRead):
        call(emu, "GET", "/v1/jobs")
    emu.inject("GET", r"^/v1/jobs$", action="stall")
    with pytest.raises(TimeoutError):
        call(emu, "GET", "/v1/jobs", timeout=0.3)


def test_fault_redirect_to_the_second_cdn_origin(emu):
    asset = finished_asset(emu)
    emu.inject(origin="cdn", action="redirect")
    first = fetch(asset["url"])
    assert first.status == 302
    location = first.headers["location"]
    assert location.startswith(emu.cdn2_url)
    assert urlsplit(location)[2:] == urlsplit(asset["url"])[2:]  # same path and query
    second = fetch(location)
    assert second.status == 200 and second.data == fetch(asset["url"]).data
    assert [r.origin for r in emu.requests if r.origin != "api"] == ["cdn", "cdn2", "cdn"]


def test_fault_delay_does_not_block_other_connections(emu):
    job_id = submit(emu)
    emu.inject("GET", r"^/v1/jobs/", delay=0.6)
    result = {}

    def slow():
        t0 = time.monotonic()
        result["status"] = call(emu, "GET", "/v1/jobs/" + job_id).status
        result["elapsed"] = time.monotonic() - t0

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert call(emu, "GET", "/v1/jobs").status == 200
    fast = time.monotonic() - t0
    thread.join()
    assert result["status"] == 200 and result["elapsed"] >= 0.55
    assert fast < 0.4


def test_reset_clears_state_and_knobs(emu):
    emu.job_duration = 50
    submit(emu)
    emu.inject(status=500, times=None)
    emu.next_job_outcome("failure")
    emu.reset()
    assert emu.jobs == {} and emu.jobs_created == 0 and emu.requests == []
    assert emu.faults == [] and emu.job_duration == 0
    assert get_job(emu, submit(emu))["status"] == "success"


# ------------------------------------------------------------------ admin, serve, plugin


def test_admin_endpoints(emu):
    assert (
        call(emu, "POST", "/_emulator/faults", {"path": "^/v1/jobs$", "status": 418}).status == 200
    )
    assert call(emu, "GET", "/v1/jobs").status == 418
    call(emu, "POST", "/_emulator/config", {"job_duration": 30})
    assert emu.job_duration == 30
    assert call(emu, "POST", "/_emulator/config", {"nope": 1}).status == 400
    call(emu, "POST", "/_emulator/outcomes", {"status": "failure", "error": "boom"})
    job_id = submit(emu)
    call(emu, "POST", "/_emulator/advance", {"seconds": 31})
    assert get_job(emu, job_id)["metadata"]["error"] == "boom"
    stats = call(emu, "GET", "/_emulator/stats").json
    assert stats["jobs_created"] == 1 and stats["requests"]["api"] == 3
    assert call(emu, "GET", "/_emulator/requests?limit=1").json["requests"][0]["method"] == "GET"
    call(emu, "POST", "/_emulator/reset")
    assert emu.jobs_created == 0


def test_serve_runs_until_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenario_uni1.emulator", "--port", "0", "--job-duration", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        text=True,
    )
    try:
        values = {}
        while "SCENARIO_EMULATOR_ADMIN" not in values:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if "=" in line:
                k, v = line.strip().split("=", 1)
                values[k] = v
        base = urlsplit(values["SCENARIO_BASE_URL"])
        assert base.path == "/v1"
        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=5)
        key, secret = values["SCENARIO_SDK_API_KEY"], values["SCENARIO_SDK_API_SECRET"]
        conn.request("GET", "/v1/jobs", headers={"Authorization": basic(key, secret)})
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_pytest_plugin_fixtures(tmp_path):
    (tmp_path / "test_inner.py").write_text(
        "import sys, pytest\n"
        "def test_import_is_cheap():\n"
        "    assert 'scenario_uni1.emulator' not in sys.modules\n"
        "def test_fixture(uni1_emulator):\n"
        "    assert uni1_emulator.running and uni1_emulator.job_duration == 0.2\n"
        "    assert uni1_emulator.url.endswith('/v1')\n"
        "@pytest.mark.uni1_emulator(job_duration=0, outputs_per_job=2)\n"
        "def test_marker(uni1_emulator):\n"
        "    assert uni1_emulator.job_duration == 0 and uni1_emulator.outputs_per_job == 2\n"
        "def test_shared_1(uni1_emulator_shared):\n"
        "    uni1_emulator_shared.job_duration = 9\n"
        "    uni1_emulator_shared.inject(status=500)\n"
        "def test_shared_2(uni1_emulator_shared, uni1_emulator_session):\n"
        "    assert uni1_emulator_shared is uni1_emulator_session\n"
        "    assert uni1_emulator_shared.job_duration == 0.2 and not uni1_emulator_shared.faults\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:scenario_uni1",
            "-p",
            "scenario_uni1.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestUnraisableExceptionWarning",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "5 passed" in out.stdout


# ------------------------------------------------------------------ throughput (printed only)


def test_throughput_is_reported(emu):
    job_id = submit(emu)
    child = (
        "import base64, http.client, sys, time\n"
        "port, path = int(sys.argv[1]), sys.argv[2]\n"
        "h = {'Authorization': 'Basic ' + base64.b64encode(b'emu-key:emu-secret').decode(),\n"
        "     'Accept': 'application/json'}\n"
        "c = http.client.HTTPConnection('127.0.0.1', port)\n"
        "n = 0; t0 = time.perf_counter()\n"
        "while time.perf_counter() - t0 < 1.0:\n"
        "    for _ in range(50):\n"
        "        c.request('GET', path, headers=h); r = c.getresponse(); r.read()\n"
        "        assert r.status == 200\n"
        "    n += 50\n"
        "print('%.0f' % (n / (time.perf_counter() - t0)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(emu.port), "/v1/jobs/" + job_id],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    rate = float(out.stdout)
    print(f"\nemulator: {rate:.0f} GET/s from one keep-alive http.client connection")
    assert rate > 0
