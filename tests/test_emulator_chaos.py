"""The emulator's chaos knob (Emulator.chaos), over raw HTTP, never through the client.

Chaos faults a random share of the requests on every route with the fault kinds
the emulator has; the soak test (test_chaos.py) relies on it doing what each kind
says, on the right routes only, the same way for the same seed, and on the
accounting it reads afterwards (created_jobs, asset_bytes, late_pending).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from scenario_uni1.emulator import Emulator, chaos, images
from scenario_uni1.emulator.faults import ACTIONS

GENERATE = "/v1/generate/custom/model_luma-uni-1-max"
AUTH = "Basic " + base64.b64encode(b"emu-key:emu-secret").decode()


class Reply:
    def __init__(self, status, headers, data):
        self.status = status
        self.headers = headers
        self.data = data

    @property
    def json(self):
        return json.loads(self.data)


def request(host, port, method, target, body=None, headers=None, timeout=5.0, limit=None):
    """One request on a fresh connection: a Reply, or the exception the transfer raised."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read(limit) if limit else resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    except (OSError, http.client.HTTPException) as exc:
        return exc
    finally:
        conn.close()


def api(emu, method, path, body=None, **kw):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    return request("127.0.0.1", emu.port, method, path, data, headers, **kw)


def cdn(url, method="GET", headers=None, body=None, **kw):
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")
    return request(parts.hostname, parts.port, method, target, body, headers, **kw)


def submit(emu, prompt="a lighthouse"):
    reply = api(emu, "POST", GENERATE, {"prompt": prompt})
    assert isinstance(reply, Reply) and reply.status == 200, reply
    return reply.json["job"]["jobId"]


def finished_asset(emu):
    """(job id, asset JSON) of a job run to success (job_duration must be 0)."""
    job_id = submit(emu)
    job = api(emu, "GET", "/v1/jobs/" + job_id).json["job"]
    asset_id = job["metadata"]["assetIds"][0]
    return job_id, api(emu, "GET", "/v1/assets/" + asset_id).json["asset"]


def part_url(emu):
    reply = api(emu, "POST", "/v1/uploads", {"fileName": "a.png", "parts": 1})
    return reply.json["upload"]["parts"][0]["url"]


@pytest.fixture
def emu():
    with Emulator(job_duration=0) as e:
        yield e


def only(emu, kind, seed=1):
    """Chaos that faults every request it can with `kind`."""
    return emu.chaos(1.0, seed=seed, kinds=[kind])


# ------------------------------------------------------------------ the knob


def test_chaos_arguments_are_checked(emu):
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="rate"):
            emu.chaos(bad)
    with pytest.raises(ValueError, match="unknown chaos kinds"):
        emu.chaos(0.1, kinds=["5xx", "meteor"])
    with pytest.raises(ValueError, match="seed"):
        emu.chaos(0.1, seed="x")
    assert emu.chaos_in_force is None
    c = emu.chaos(0.1)
    assert isinstance(c.seed, int) and emu.chaos_in_force is c  # a drawn seed is kept
    assert emu.chaos(0) is None and emu.chaos_in_force is None


def test_every_kind_is_documented_and_placed_on_a_route():
    placed = {k for kinds in chaos.KINDS_BY_ROUTE.values() for k in kinds} | set(chaos._RANGE)
    assert placed == set(chaos.KINDS)
    # every action the Fault rule knows is one of the kinds, under its own name
    assert {a for a in ACTIONS if a} <= set(chaos.KINDS)


def test_rate_zero_faults_nothing_and_rate_one_faults_everything(emu):
    job_id = submit(emu)
    c = emu.chaos(1.0, seed=3, kinds=["5xx"])
    for _ in range(20):
        reply = api(emu, "GET", "/v1/jobs/" + job_id)
        assert reply.status in (500, 502, 503, 504)
    assert c.counts == {"5xx": 20} and c.seen == {"job": 20}
    emu.chaos(None)
    assert api(emu, "GET", "/v1/jobs/" + job_id).status == 200


def test_the_rate_is_the_share_of_requests_faulted(emu):
    job_id = submit(emu)
    c = emu.chaos(0.1, seed=11, kinds=["5xx"])
    statuses = [api(emu, "GET", "/v1/jobs/" + job_id).status for _ in range(600)]
    faulted = sum(s != 200 for s in statuses)
    assert faulted == c.counts["5xx"] == c.faulted
    assert 30 <= faulted <= 90  # binomial(600, 0.1): mean 60, sd 7.3


def test_same_seed_same_faults_whatever_the_order(emu):
    a, b = submit(emu, "a"), submit(emu, "b")

    def run(order, seed):
        emu.clear_requests()
        emu.chaos(0.3, seed=seed, kinds=["5xx", "429", "html_502"])
        for job_id in order:
            api(emu, "GET", "/v1/jobs/" + job_id)
        per_job = {}
        for r in emu.requests:
            per_job.setdefault(r.path, []).append(r.fault)
        return per_job

    first = run([a] * 40 + [b] * 40, seed=5)
    again = run([a, b] * 40, seed=5)  # interleaved: each job's n-th GET is drawn the same
    other = run([a] * 40 + [b] * 40, seed=6)
    assert first == again
    assert first != other
    assert sum(f is not None for f in first["/v1/jobs/" + a]) > 0


def test_injected_faults_win_and_admin_requests_are_never_faulted(emu):
    job_id = submit(emu)
    c = only(emu, "5xx")
    emu.inject(path="/v1/jobs/", status=418, times=1)
    assert api(emu, "GET", "/v1/jobs/" + job_id).status == 418
    assert c.seen == {}  # an injected fault took it before the draw
    stats = request("127.0.0.1", emu.port, "GET", "/_emulator/stats")
    assert stats.status == 200 and stats.json["chaos"]["counts"] == {}


def test_reset_turns_chaos_off(emu):
    only(emu, "5xx")
    emu.reset()
    assert emu.chaos_in_force is None
    assert api(emu, "POST", GENERATE, {"prompt": "x"}).status == 200


def test_admin_route_sets_and_stops_chaos(emu):
    job_id = submit(emu)
    body = json.dumps({"rate": 1, "seed": 4, "kinds": ["429"]}).encode()
    reply = request("127.0.0.1", emu.port, "POST", "/_emulator/chaos", body)
    assert reply.status == 200 and reply.json["chaos"]["seed"] == 4
    assert api(emu, "GET", "/v1/jobs/" + job_id).status == 429
    bad = request("127.0.0.1", emu.port, "POST", "/_emulator/chaos", b'{"rate": 2}')
    assert bad.status == 400 and "rate" in bad.json["reason"]
    assert request("127.0.0.1", emu.port, "DELETE", "/_emulator/chaos").status == 200
    assert emu.chaos_in_force is None
    assert api(emu, "GET", "/v1/jobs/" + job_id).status == 200


def test_routes_are_told_apart(emu):
    job_id, asset = finished_asset(emu)
    url = part_url(emu)
    c = emu.chaos(1.0, seed=2, kinds=["slow"])  # answers stay right, every request is drawn
    api(emu, "POST", GENERATE + "?dryRun=true", {"prompt": "quote"})
    api(emu, "POST", GENERATE, {"prompt": "p"})
    api(emu, "GET", "/v1/jobs")
    api(emu, "GET", "/v1/jobs/" + job_id)
    api(emu, "POST", f"/v1/jobs/{job_id}/action", {"action": "cancel"})
    api(emu, "GET", "/v1/assets/" + asset["id"])
    api(emu, "POST", f"/v1/assets/{asset['id']}/download", {"targetFormat": "png"})
    api(emu, "POST", "/v1/assets", {"image": base64.b64encode(_png()).decode()})
    upload = api(emu, "POST", "/v1/uploads", {"fileName": "b.png"}).json["upload"]
    api(emu, "GET", "/v1/uploads/" + upload["id"])
    api(emu, "POST", f"/v1/uploads/{upload['id']}/action", {"action": "complete"})
    cdn(asset["url"])
    cdn(url, "PUT", body=b"x")
    assert c.seen == {
        "estimate": 1,
        "generate": 1,
        "jobs": 1,
        "job": 1,
        "job_action": 1,
        "asset": 1,
        "asset_download": 1,
        "asset_upload": 1,
        "upload_create": 1,
        "upload": 1,
        "upload_action": 1,
        "cdn_get": 1,
        "part_put": 1,
    }
    assert c.counts == {"slow": 13}


def _png():
    return images.encode_png(8, 8, images.pixels_rgb(8, 8, 3))


def test_a_kind_that_does_not_fit_the_route_leaves_it_alone(emu):
    job_id, asset = finished_asset(emu)
    c = emu.chaos(1.0, seed=1, kinds=["create_after", "short_close", "ignore_range"])
    assert api(emu, "GET", "/v1/jobs/" + job_id).status == 200  # create_after: generate only
    # short_close lies about a CDN GET's body, not a PUT's answer
    reply = cdn(asset["url"], "PUT", body=b"x")
    assert reply.status == 403
    reply = cdn(asset["url"])  # a Range lie needs a Range header: short_close it is
    assert "content-length" not in reply.headers
    assert c.counts == {"short_close": 1} and c.seen == {"job": 1, "cdn_other": 1, "cdn_get": 1}


# ------------------------------------------------------------------ what each kind does


@pytest.mark.parametrize("route", ["job", "generate"])
def test_api_status_kinds(emu, route):
    job_id = submit(emu)

    def send():
        if route == "job":
            return api(emu, "GET", "/v1/jobs/" + job_id)
        return api(emu, "POST", GENERATE, {"prompt": "status kinds"})

    only(emu, "5xx")
    statuses = {send().status for _ in range(30)}
    assert statuses == {500, 502, 503, 504}
    only(emu, "html_502")
    reply = send()
    assert reply.status == 502 and reply.headers["content-type"] == "text/html"
    assert reply.data.startswith(b"<html>")
    only(emu, "429")
    reply = send()
    assert reply.status == 429 and reply.headers["retry-after"] == "1"
    only(emu, "429_remaining")
    reply = send()
    assert reply.status == 429 and "retry-after" not in reply.headers
    assert reply.json["remainingSeconds"] == 1
    assert emu.jobs_created == 1  # none of these created a job


def test_ceiling_429_has_the_contracts_details(emu):
    only(emu, "429_ceiling")
    reply = api(emu, "POST", GENERATE, {"prompt": "p"})
    assert reply.status == 429 and "retry-after" not in reply.headers
    assert reply.json["details"]["actionName"] == "generate"
    assert reply.json["details"]["actionLimit"] in (4, 10, 20)
    assert emu.jobs_created == 0


def test_drops_before_and_after(emu):
    only(emu, "drop_before")
    err = api(emu, "POST", GENERATE, {"prompt": "before"})
    assert isinstance(err, (ConnectionError, http.client.RemoteDisconnected)), err
    assert emu.jobs_created == 0
    only(emu, "drop_after")
    err = api(emu, "POST", GENERATE, {"prompt": "after"})
    assert isinstance(err, (ConnectionError, http.client.RemoteDisconnected)), err
    assert [body["prompt"] for _, body in emu.created_jobs()] == ["after"]


@pytest.mark.parametrize("kind", ["create_after", "drop_create_after"])
def test_job_created_after_a_failed_post(emu, kind):
    only(emu, kind)
    reply = api(emu, "POST", GENERATE, {"prompt": "late"})
    if kind == "create_after":
        assert isinstance(reply, Reply) and reply.status == 504
    else:
        assert isinstance(reply, (ConnectionError, http.client.RemoteDisconnected)), reply
    assert emu.jobs_created == 0 and emu.late_pending == 1
    deadline = time.monotonic() + 3
    while emu.late_pending:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert [body["prompt"] for _, body in emu.created_jobs()] == ["late"]


def test_truncate_stall_and_slow_on_the_api(emu):
    job_id = submit(emu)
    only(emu, "truncate")
    assert isinstance(api(emu, "GET", "/v1/jobs/" + job_id), http.client.IncompleteRead)
    only(emu, "stall")
    t0 = time.monotonic()
    err = api(emu, "GET", "/v1/jobs/" + job_id, timeout=0.5)
    assert isinstance(err, socket.timeout), err
    assert time.monotonic() - t0 < 2
    for kind in ("slow", "slow_answer"):
        only(emu, kind, seed=8)
        t0 = time.monotonic()
        reply = api(emu, "GET", "/v1/jobs/" + job_id)
        assert reply.status == 200 and reply.json["job"]["jobId"] == job_id
        assert 0.05 <= time.monotonic() - t0 < 2


def test_cdn_kinds(emu):
    _, asset = finished_asset(emu)
    url, size = asset["url"], asset["metadata"]["size"]
    truth = emu.asset_bytes(asset["id"])
    assert len(truth) == size and cdn(url).data == truth

    only(emu, "redirect")
    reply = cdn(url)
    assert reply.status == 302 and reply.headers["location"].startswith(emu.cdn2_url)
    only(emu, "cdn_403")
    reply = cdn(url)
    assert reply.status == 403 and b"AccessDenied" in reply.data
    only(emu, "html_200")
    reply = cdn(url)
    assert reply.status == 200 and reply.headers["content-type"] == "text/html"
    only(emu, "short_close")
    reply = cdn(url)
    assert "content-length" not in reply.headers and reply.data == truth[: size // 2]
    only(emu, "short_chunked")
    reply = cdn(url)
    assert reply.headers["transfer-encoding"] == "chunked" and reply.data == truth[: size // 2]
    only(emu, "endless")
    reply = cdn(url, limit=size + 100_000)
    assert reply.data[:size] == truth and len(reply.data) == size + 100_000
    only(emu, "truncate")
    assert isinstance(cdn(url), http.client.IncompleteRead)


def test_range_kinds_only_on_range_requests(emu):
    _, asset = finished_asset(emu)
    url, size = asset["url"], asset["metadata"]["size"]
    truth = emu.asset_bytes(asset["id"])
    rng = {"Range": "bytes=100-"}
    only(emu, "ignore_range")
    assert cdn(url).status == 200  # no Range: not drawn into a Range lie
    reply = cdn(url, headers=rng)
    assert reply.status == 200 and reply.data == truth
    only(emu, "range_wrong_start")
    reply = cdn(url, headers=rng)
    assert reply.status == 206 and reply.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
    only(emu, "range_wrong_total")
    reply = cdn(url, headers=rng)
    assert reply.headers["content-range"] == f"bytes 100-{size - 1}/{size + 1000}"
    only(emu, "range_extra")
    reply = cdn(url, headers=rng)
    assert reply.data == truth[100:] + bytes(1000)


def test_part_put_kinds(emu):
    url = part_url(emu)
    only(emu, "5xx")
    assert cdn(url, "PUT", body=b"part").status in (500, 502, 503, 504)
    only(emu, "drop_after")
    err = cdn(url, "PUT", body=b"part")
    assert isinstance(err, (ConnectionError, http.client.RemoteDisconnected)), err
    # the part was stored: completing now finds it
    emu.chaos(None)
    upload_id = urlsplit(url).path.split("/")[2]
    done = api(emu, "POST", f"/v1/uploads/{upload_id}/action", {"action": "complete"})
    assert done.status == 200
    c = only(emu, "stall")
    assert cdn(url, "PUT", body=b"part").status == 404  # no stall on an empty answer
    assert c.counts == {} and c.seen == {"part_put": 1}


# ------------------------------------------------------------------ accounting


def test_created_jobs_and_asset_bytes(emu):
    emu.chaos(None)
    ids = [submit(emu, f"prompt {k}") for k in range(3)]
    created = emu.created_jobs()
    assert [job_id for job_id, _ in created] == ids
    assert [body for _, body in created] == [{"prompt": f"prompt {k}"} for k in range(3)]
    created[0][1]["prompt"] = "changed"  # a copy
    assert emu.created_jobs()[0][1]["prompt"] == "prompt 0"
    _, asset = finished_asset(emu)
    data = emu.asset_bytes(asset["id"])
    assert data == cdn(asset["url"]).data and data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(KeyError):
        emu.asset_bytes("asset_unknown")
    assert io.BytesIO(emu.asset_bytes(asset["id"], "jpeg")).read(2) == b"\xff\xd8"


def test_the_command_runs_with_chaos():
    import os
    import signal
    import subprocess
    import sys

    import scenario_uni1.emulator as emulator_mod

    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(emulator_mod.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    argv = ["--port", "0", "--job-duration", "0", "--chaos", "1", "--chaos-seed", "9"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenario_uni1.emulator", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
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
        assert values["SCENARIO_EMULATOR_CHAOS"] == "1.0 seed=9"
        base = urlsplit(values["SCENARIO_BASE_URL"])
        stats = request(base.hostname, base.port, "GET", "/_emulator/stats")
        assert stats.json["chaos"]["seed"] == 9  # admin routes are never faulted
        request(base.hostname, base.port, "GET", "/v1/jobs", headers={"Authorization": AUTH})
        stats = request(base.hostname, base.port, "GET", "/_emulator/stats")
        assert stats.json["chaos"]["seen"] == {"jobs": 1}
        assert sum(stats.json["chaos"]["counts"].values()) == 1  # rate 1: faulted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
