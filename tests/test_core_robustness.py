"""Robustness of the client core against a confused server, hostile settings and bursts.

- an answer about another job, asset or upload than the one asked for is an APIError,
  never taken for the one asked about;
- control characters in user_agent / proxy / ca_bundle are refused before any request
  (a CR LF in the User-Agent used to add a header of the caller's choosing);
- absurd durations (backoff_max=1e9 overflowed the millisecond sleep) are refused;
- a response header too large for libcurl is an APIError, not a MemoryError;
- the session pool shrinks back after a burst of concurrent calls.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
from conftest import connections_to, open_fds

import scenario_uni1 as uni1


@pytest.fixture
def done_jobs(client, emu):
    emu.job_duration = 0.05
    a = client.generate("A castle on a hill")
    b = client.generate("A forest at dawn")
    a.wait(timeout=30)
    b.wait(timeout=30)
    return a, b


# ---- answers about another id ------------------------------------------------------


def test_job_answer_about_another_job_is_an_api_error(client, emu, done_jobs):
    a, b = done_jobs
    emu.inject(method="GET", path=f"^/v1/jobs/{a.id}$", status=200, body={"job": emu.job(b.id)})
    with pytest.raises(uni1.APIError, match=f"job {b.id}, not {a.id}"):
        client.job(a.id)
    # refresh() and wait() go through the same check; the Job keeps its identity.
    emu.inject(method="GET", path=f"^/v1/jobs/{a.id}$", status=200, body={"job": emu.job(b.id)})
    with pytest.raises(uni1.APIError):
        a.refresh()
    assert a.id != b.id
    assert a.asset_ids != b.asset_ids
    assert client.job(a.id).id == a.id  # the next, honest answer is fine


def test_asset_answer_about_another_asset_is_an_api_error(client, emu, done_jobs, tmp_path):
    a, b = done_jobs
    (asset_a,) = a.asset_ids
    other = client.get_asset(b.asset_ids[0])
    emu.inject(method="GET", path=f"^/v1/assets/{asset_a}$", status=200, body={"asset": other})
    with pytest.raises(uni1.APIError, match=f"asset {b.asset_ids[0]}, not {asset_a}"):
        a.download(tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing of B's saved under A's name
    assert emu.request_count(method="GET", origin="cdn") == 0
    assert len(a.download(tmp_path)) == 1


def test_upload_answer_about_another_upload_is_an_api_error(emu, tmp_path):
    from test_uploads import big_png

    path = tmp_path / "big.png"
    path.write_bytes(big_png())
    emu.inject(
        method="GET",
        path=r"^/v1/uploads/[^/]+$",
        status=200,
        body={
            "upload": {
                "id": "upload_someoneelse",
                "status": "imported",
                "parts": [],
                "entityId": "asset_someoneelse",
            }
        },
        times=None,
    )
    with emu.client(timeout=20.0) as client:
        with pytest.raises(uni1.APIError, match="upload upload_someoneelse, not upload_"):
            client.upload(path)


# ---- settings ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["user_agent", "proxy", "ca_bundle"])
@pytest.mark.parametrize("value", ["ua\r\nX-Injected: yes", "ua\nX-Injected: yes", "ua\x1b[31m"])
def test_control_characters_in_settings_refused_before_any_request(emu, field, value):
    with pytest.raises(uni1.ConfigurationError, match=field):
        emu.client(**{field: value})
    assert emu.requests == []


def test_user_agent_reaches_the_server_as_one_header(emu):
    with emu.client(user_agent="my-app/1.0 (+https://example.test)") as client:
        client.estimate("A castle")
    (req,) = emu.requests
    assert req.headers["user-agent"] == "my-app/1.0 (+https://example.test)"
    assert "x-injected" not in {k.lower() for k in req.headers}


@pytest.mark.parametrize(
    "settings",
    [
        {"backoff_max": 1e9},
        {"backoff_max": math.nan},
        {"backoff_base": 1e9, "backoff_max": 1e9},
        {"backoff_base": -1.0},
        {"timeout": 1e9},
        {"connect_timeout": 1e12},
        {"stall_timeout": math.nan},
    ],
)
def test_absurd_durations_refused(emu, settings):
    with pytest.raises(uni1.ConfigurationError):
        emu.client(**settings)
    assert emu.requests == []


def test_large_backoff_still_allowed_and_bounded_by_timeout(emu):
    """A large but sane backoff_max is accepted; the call's deadline bounds the pause."""
    emu.inject(method="GET", path=r"^/v1/jobs/", status=503, times=None)
    with emu.client(backoff_base=1000.0, backoff_max=100_000.0, max_retries=3) as client:
        t0 = time.monotonic()
        with pytest.raises((uni1.APIError, uni1.TimeoutError)):
            client.job("job_doesnotmatter", timeout=1.0)
        assert time.monotonic() - t0 < 10.0


# ---- response headers ------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Big": "x" * 300_000},  # one line past libcurl's 100 KB line limit
        {f"X-Many-{i}": "y" * 9_000 for i in range(40)},  # 360 KB in all
    ],
    ids=["one-huge-line", "many-lines"],
)
def test_huge_response_header_is_an_api_error(client, emu, done_jobs, headers):
    a, _ = done_jobs
    emu.inject(method="GET", path=f"^/v1/jobs/{a.id}$", headers=headers, times=None)
    before = emu.request_count(method="GET", path="^/v1/jobs/")
    with pytest.raises(uni1.APIError, match="response header too large"):
        client.job(a.id)
    # A protocol error, not a transient one: asked once, not retried.
    assert emu.request_count(method="GET", path="^/v1/jobs/") == before + 1


def test_huge_cdn_header_is_an_api_error(client, emu, done_jobs, tmp_path):
    a, _ = done_jobs
    emu.inject(method="GET", origin="cdn", headers={"X-Big": "x" * 300_000}, times=None)
    with pytest.raises(uni1.APIError, match="response header too large"):
        a.download(tmp_path)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


# ---- the pool shrinks ------------------------------------------------------------


BURST = 100


def _settle(measure, limit, seconds=10.0):
    """measure() once it is <= limit (the emulator closes its side of the
    connections a moment after the client does), or its last value."""
    end = time.monotonic() + seconds
    while True:
        value = measure()
        if value <= limit or time.monotonic() > end:
            return value
        time.sleep(0.05)


def test_pool_shrinks_after_a_burst(emu):
    emu.job_duration = 0.05
    with emu.client(timeout=30.0) as client:
        job = client.generate("A castle on a hill")
        job.wait(timeout=30)
        job.images()  # one session, with its API and CDN connections
        time.sleep(0.2)  # let the emulator settle its side too
        base_fds = open_fds()
        base_conns = connections_to(emu)
        barrier = threading.Barrier(BURST)
        errors = []

        def one():
            try:
                barrier.wait(30)
                client.job(job.id).images()
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(BURST)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        # Every transfer runs on the client's engine, whose connection cache keeps
        # UNI1_ENGINE_CONNECTIONS (16) open; UNI1_IDLE_SESSIONS (4) idle sessions
        # stay, with their wakeup pairs. The emulator runs in this process, so each
        # kept connection also holds its server-side fd here. Before the pool fix:
        # every one of the BURST sessions stayed (200 connections, 600 fds).
        conns = _settle(lambda: connections_to(emu), 16)
        fds = _settle(open_fds, base_fds + 40)
        assert conns <= 16, f"{conns} connections kept, {base_conns} before"
        assert fds <= base_fds + 40, f"{fds} fds after the burst, {base_fds} before"
