"""Credentials stay on the API host and out of every repr, log line and exception;
server data cannot make the client write outside the destination or send anywhere
it should not.

Distinctive credentials are used throughout so that any leak, in any encoding
the client could produce (plain, Basic base64, the header), is found by a plain
substring search.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import threading
import traceback
import urllib.parse

import pytest
from conftest import GENERATE_PATH

import scenario_uni1 as uni1

KEY = "uni1-key-K7yQ2pVx"
SECRET = "uni1-secret-S3cr3tZ9wL"
BASIC = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
SECRETS = (KEY, SECRET, BASIC, BASIC[:16], urllib.parse.quote(SECRET), "Basic ")

GEN = "^" + GENERATE_PATH + "$"
JOB_GET = r"^/v1/jobs/job_[A-Za-z0-9]+$"
LISTING = r"^/v1/jobs$"
ASSET_GET = r"^/v1/assets/asset_"
CDN = r"^/assets/"

pytestmark = pytest.mark.uni1_emulator(api_key=KEY, api_secret=SECRET, job_duration=0)


def leaks(text) -> list:
    text = str(text)
    return [s for s in SECRETS if s in text]


def exception_text(exc) -> str:
    """Everything a caller could print or log about an exception."""
    parts = [str(exc), repr(exc), repr(exc.args)]
    parts += traceback.format_exception(type(exc), exc, exc.__traceback__)
    for name in dir(exc):
        if name.startswith("__") or name == "with_traceback":
            continue
        try:
            value = getattr(exc, name)
        except Exception:  # noqa: BLE001
            continue
        if not callable(value):
            parts.append(repr(value))
    return "\n".join(parts)


def tree(path) -> set:
    out = set()
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(root, n), path))
    return out


@pytest.fixture
def emu(uni1_emulator):
    return uni1_emulator


@pytest.fixture
def client(emu):
    with emu.client(timeout=10.0, max_retries=1) as c:
        yield c


def finished(emu, client, prompt="a secret-safe job"):
    job = client._submit(prompt)
    job.refresh()
    assert job.status == "success"
    return job


# ================================================================== the CDN never sees credentials


def _cdn_requests(emu):
    return [r for r in emu.requests if r.origin in ("cdn", "cdn2")]


def _assert_no_credentials_left_the_api(emu):
    api = [r for r in emu.requests if r.origin == "api"]
    assert api and all("authorization" in r.headers for r in api)  # the control: the API gets them
    cdn = _cdn_requests(emu)
    assert cdn, "no CDN request was made"
    for r in cdn:
        assert "authorization" not in r.headers, r
        assert "proxy-authorization" not in r.headers and "cookie" not in r.headers, r
        assert not leaks(r.headers) and not leaks(r.path) and not leaks(r.query), r
    assert emu.cdn_authorization_seen == 0


def test_downloads_carry_no_authorization(emu, client, tmp_path):
    job = finished(emu, client)
    job.images()
    job.download(tmp_path)
    _assert_no_credentials_left_the_api(emu)


def test_redirect_to_another_cdn_origin_carries_no_authorization(emu, client, tmp_path):
    job = finished(emu, client)
    emu.inject("GET", CDN, origin="cdn", action="redirect", times=2)
    job.images()
    job.download(tmp_path)
    assert emu.request_count(origin="cdn2") == 2
    _assert_no_credentials_left_the_api(emu)


def test_truncated_then_resumed_download_carries_no_authorization(emu, client, tmp_path):
    emu.asset_size_bytes = 200_000
    job = finished(emu, client)
    emu.inject("GET", CDN, origin="cdn", action="truncate", times=1)
    job.download(tmp_path)
    assert any("range" in r.headers for r in _cdn_requests(emu))
    _assert_no_credentials_left_the_api(emu)


def test_cdn_redirect_back_to_the_api_host_carries_no_authorization(emu, client, tmp_path):
    # A hostile (or misconfigured) CDN bounces the download to the API origin:
    # the request must arrive there without the API's credentials.
    job = finished(emu, client)
    emu.inject(
        "GET",
        CDN,
        origin="cdn",
        status=302,
        body=b"",
        headers={"Location": emu.origin_url + "/v1/jobs/" + job.id},
        times=None,
    )
    api_before = len([r for r in emu.requests if r.origin == "api"])
    dest = tmp_path / "out"
    with pytest.raises(uni1.Uni1Error):
        job.download(dest)
    bounced = [r for r in emu.requests if r.origin == "api"][api_before:]
    bounced = [r for r in bounced if r.path == "/v1/jobs/" + job.id]
    assert bounced, "the redirect was not followed at all"
    for r in bounced:
        assert "authorization" not in r.headers, "credentials followed a CDN redirect"
    assert os.listdir(dest) == []


def test_asset_url_on_the_api_host_is_fetched_without_authorization(emu, client, tmp_path):
    # The asset record (server data) names a URL on the API host itself.
    job = finished(emu, client)
    asset = emu.assets[job.asset_ids[0]]
    asset["url"] = emu.origin_url + "/v1/jobs/" + job.id + "?from=asset"
    emu.inject("GET", ASSET_GET, status=200, body={"asset": asset}, times=None)
    before = len(emu.requests)
    with pytest.raises(uni1.Uni1Error):
        job.images()
    hits = [r for r in emu.requests[before:] if r.query.get("from") == "asset"]
    assert hits
    assert all("authorization" not in r.headers for r in hits)


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.png",
        "gopher://127.0.0.1:70/x",
        "dict://127.0.0.1/x",
    ],
)
def test_cdn_redirect_to_another_scheme_is_refused(emu, client, tmp_path, location):
    job = finished(emu, client)
    emu.inject(
        "GET", CDN, origin="cdn", status=302, body=b"", headers={"Location": location}, times=None
    )
    dest = tmp_path / "out"
    with pytest.raises(uni1.Uni1Error):
        job.download(dest)
    assert os.listdir(dest) == []
    with pytest.raises(uni1.Uni1Error) as info:
        job.images()
    assert b"root:" not in repr(info.value).encode()


# ================================================================== reprs, exceptions, pickles


def test_reprs_and_pickles_hold_no_credentials(emu, client):
    job = finished(emu, client)
    for text in (repr(client), str(client), repr(job), str(job), repr(job.raw), pickle.dumps(job)):
        assert not leaks(text if isinstance(text, str) else text.decode("latin-1")), text
    for img in job.images():
        assert not leaks(repr(img))
    assert not leaks(repr(vars(client)))


def _raised(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("nothing was raised")


def test_exceptions_hold_no_credentials(emu, client):
    job = finished(emu, client)
    cases = {}
    # wrong secret: 401
    with uni1.Client(KEY, SECRET + "x", base_url=emu.url, max_retries=0) as wrong:
        cases["401"] = _raised(lambda: wrong.job(job.id))
    emu.inject("GET", JOB_GET, status=403, times=1)
    cases["403"] = _raised(job.refresh)
    emu.inject("GET", JOB_GET, status=500, times=None)
    cases["500"] = _raised(job.refresh)
    emu.clear_faults()
    emu.inject("GET", JOB_GET, status=200, body=b"{garbage", times=1)
    cases["malformed"] = _raised(job.refresh)
    emu.inject("GET", JOB_GET, delay=2, times=None)
    cases["timeout"] = _raised(lambda: job.refresh(timeout=0.3))
    emu.clear_faults()
    emu.inject("POST", GEN, action="drop_after", times=1)
    emu.inject("GET", LISTING, status=500, times=None)
    cases["uncertain"] = _raised(lambda: client._submit("maybe"))
    emu.clear_faults()
    emu.next_job_outcome("failure")
    failing = client._submit("fails")
    cases["job_failed"] = _raised(lambda: failing.wait(timeout=5))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with uni1.Client(KEY, SECRET, base_url=f"http://127.0.0.1:{port}", max_retries=0) as dead:
        cases["connect"] = _raised(lambda: dead.job("job_x"))
    expected = {
        "401": uni1.AuthenticationError,
        "403": uni1.PermissionDeniedError,
        "500": uni1.ServerError,
        "malformed": uni1.APIError,
        "timeout": uni1.TimeoutError,
        "uncertain": uni1.SubmissionUncertainError,
        "job_failed": uni1.JobFailedError,
        "connect": uni1.ConnectionError,
    }
    for name, exc in cases.items():
        assert isinstance(exc, expected[name]), (name, exc)
        assert not leaks(exception_text(exc)), (name, leaks(exception_text(exc)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"api_key": KEY + "\n", "api_secret": SECRET},
        {"api_key": KEY, "api_secret": SECRET + "\r\nX-Evil: 1"},
        {"api_key": KEY, "api_secret": SECRET, "base_url": f"http://{KEY}:{SECRET}@127.0.0.1:1/v1"},
        {"api_key": KEY, "api_secret": SECRET, "base_url": "ftp://127.0.0.1/"},
        {"api_key": KEY, "api_secret": SECRET, "timeout": -1},
        {"api_key": KEY, "api_secret": SECRET, "project_id": "p\r\nX: y"},
        {"api_key": KEY},
        {"api_secret": SECRET},
    ],
    ids=[
        "key_newline",
        "secret_crlf",
        "creds_in_url",
        "bad_scheme",
        "bad_timeout",
        "project_crlf",
        "key_only",
        "secret_only",
    ],
)
def test_configuration_errors_hold_no_credentials(monkeypatch, kwargs):
    for name in ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET", "SCENARIO_SDK_JWT"):
        monkeypatch.delenv(name, raising=False)
    exc = _raised(lambda: uni1.Client(**kwargs))
    assert isinstance(exc, (uni1.ConfigurationError, uni1.InvalidRequestError)), exc
    assert not leaks(exception_text(exc)), exception_text(exc)


def test_proxy_credentials_stay_out_of_reprs_errors_and_logs(emu, caplog):
    proxy_secret = "pr0xy-S3CRET-pw"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    caplog.set_level(logging.DEBUG, logger="scenario_uni1")
    proxy = f"http://proxyuser:{proxy_secret}@127.0.0.1:{port}"
    with emu.client(proxy=proxy, max_retries=1) as c:
        exc = _raised(lambda: c.job("job_abc"))
        assert isinstance(exc, uni1.ConnectionError)
        texts = [repr(c), str(c), exception_text(exc), caplog.text]
    assert caplog.records, "nothing was logged"
    for text in texts:
        assert proxy_secret not in text and not leaks(text), text


def test_hostile_ids_from_the_caller_send_nothing(emu, client):
    before = len(emu.requests)
    for bad in (
        "job_a\r\nX-Injected: 1",
        "../../v1/assets",
        "job_a/../b",
        "job_a?x=1",
        "job_" + "a" * 300,
        "job_é",
    ):
        with pytest.raises(uni1.InvalidRequestError):
            client.job(bad)
    for bad in ("asset_a\r\nX: 1", "asset_../x", "asset_a/b", "asset_" + "a" * 300):
        with pytest.raises(uni1.InvalidRequestError):
            client.get_asset(bad)
    assert len(emu.requests) == before


# ================================================================== logs


def _log_everything(emu, client, tmp_path):
    """A session with retries, rate limits, a redirect, an expired URL and an
    uncertain submission: every code path that logs."""
    emu.inject("POST", GEN, status=503, times=1)
    job = client._submit("logged job")
    emu.inject("GET", JOB_GET, status=429, headers={"Retry-After": "0.1"}, times=1)
    job.wait(timeout=10)
    emu.inject("GET", CDN, origin="cdn", action="redirect", times=1)
    job.images()
    emu.inject("GET", CDN, origin="cdn", status=403, times=1)
    job.download(tmp_path)
    emu.inject("POST", GEN, action="drop_after", times=1)
    client._submit("adopted job")
    with pytest.raises(uni1.AuthenticationError):
        with uni1.Client(KEY, SECRET + "wrong", base_url=emu.url, max_retries=0) as wrong:
            wrong.job(job.id)


def test_debug_logs_hold_no_credentials_or_signed_urls(emu, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="scenario_uni1")
    # created with DEBUG on; a short settle window: the 503's POST made no job
    with emu.client(timeout=10.0, max_retries=2, settle_window=0.5) as client:
        _log_everything(emu, client, tmp_path)
    records = [r for r in caplog.records if r.name == "scenario_uni1"]
    text = "\n".join(r.getMessage() for r in records) + caplog.text
    # The control: the client really logged this session, retries included.
    assert len(records) >= 8, text
    assert "submitted job_" in text and "retry" in text.lower()
    assert not leaks(text), leaks(text)
    for marker in ("Signature=", "Policy=", "Key-Pair-Id=", "Authorization"):
        assert marker not in text, marker


CHILD = textwrap.dedent(
    """
    import os, sys, tempfile
    import scenario_uni1 as uni1
    c = uni1.Client(max_retries=2)
    job = c.generate("logged from a child")
    job.wait(timeout=10)
    job.images()
    job.download(tempfile.mkdtemp())
    print("DONE", job.id)
    """
)


def test_scenario_uni1_log_env_logs_without_credentials(emu):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env.update(emu.env())
    env["SCENARIO_UNI1_LOG"] = "debug"
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    emu.inject("GET", JOB_GET, status=502, times=1)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("DONE job_")
    err = proc.stderr
    assert "scenario_uni1 DEBUG" in err and "scenario_uni1 INFO" in err, err
    assert not leaks(err) and not leaks(proc.stdout), leaks(err)
    assert "Signature=" not in err and "Policy=" not in err


# ================================================================== hostile ids and names from the server

HOSTILE_ASSET_IDS = [
    "../../etc/x",
    "asset_/../x",
    "asset_" + "a" * 300,
    "/etc/passwd",
    "..",
    ".",
    "",
    "asset_x/../../y",
    "asset_x\\..\\..\\y",
    "asset_%2e%2e%2fx",
    "asset_a\u0000/../x",
    ".bashrc",
    "asset_x\r\nX-Injected: 1",
    "asset_\u2024\u2024/x",
]


def _serve_hostile_job(emu, client, bad):
    emu.job_duration = 5
    job = client._submit("hostile ids")
    raw = emu.job(job.id)
    raw["status"], raw["progress"] = "success", 1.0
    raw["metadata"]["assetIds"] = ["asset_fine", bad]
    emu.inject("GET", r"^/v1/jobs/" + job.id + "$", status=200, body={"job": raw}, times=None)
    return job


def _assert_nothing_escaped(emu, tmp_path, before, dest, bad):
    assert tree(tmp_path) - before <= {"a", os.path.join("a", "dest")}
    assert not os.path.exists(dest) or os.listdir(dest) == []
    for r in emu.requests:  # nothing carrying the hostile id went out
        assert ".." not in r.path and "%2e" not in r.path.lower(), r
        assert not bad or bad not in r.path, r
    assert emu.request_count("GET", ASSET_GET) == 0 and emu.request_count(origin="cdn") == 0
    assert emu.jobs_created == 1


@pytest.mark.parametrize(
    "bad", HOSTILE_ASSET_IDS, ids=[f"id{i}" for i in range(len(HOSTILE_ASSET_IDS))]
)
def test_hostile_asset_id_in_the_job_is_refused(emu, client, tmp_path, bad):
    job = _serve_hostile_job(emu, client, bad)
    dest = tmp_path / "a" / "dest"
    before = tree(tmp_path)
    with pytest.raises((uni1.APIError, uni1.InvalidRequestError)):
        job.refresh()
    assert job.status == "queued" and job.asset_ids == ()  # nothing of it was taken
    _assert_nothing_escaped(emu, tmp_path, before, dest, bad)


@pytest.mark.parametrize(
    "bad", ["../../etc/x", "asset_/../x", "asset_" + "a" * 300], ids=["dotdot", "prefixed", "long"]
)
def test_hostile_asset_id_cannot_make_download_or_images_escape(emu, client, tmp_path, bad):
    job = _serve_hostile_job(emu, client, bad)
    dest = tmp_path / "a" / "dest"
    before = tree(tmp_path)
    with pytest.raises((uni1.APIError, uni1.InvalidRequestError)):
        job.download(dest)
    with pytest.raises((uni1.APIError, uni1.InvalidRequestError)):
        job.images()
    _assert_nothing_escaped(emu, tmp_path, before, dest, bad)


def test_hostile_names_in_the_asset_record_are_not_used(emu, client, tmp_path):
    job = finished(emu, client)
    asset = emu.assets[job.asset_ids[0]]
    asset["mimeType"] = "image/png/../../../../pwned"
    asset["metadata"]["name"] = "../../pwned.png"
    asset["name"] = "../../pwned.png"
    asset["fileName"] = "/tmp/pwned.png"
    emu.inject("GET", ASSET_GET, status=200, body={"asset": asset}, times=None)
    dest = tmp_path / "a" / "dest"
    before = tree(tmp_path)
    paths = job.download(dest)
    for p in paths:
        assert p.parent.resolve() == dest.resolve()
        assert p.name.startswith(job.asset_ids[0] + ".")
    new = tree(tmp_path) - before
    assert new == {"a", os.path.join("a", "dest")} | {os.path.relpath(p, tmp_path) for p in paths}
    assert not (tmp_path / "pwned.png").exists() and not os.path.exists("/tmp/pwned.png")


def test_asset_record_naming_another_id_is_refused(emu, client, tmp_path):
    """An asset record about another id is not the asset asked for (issue 6 item 5):
    an APIError, and no file under either name."""
    job = finished(emu, client)
    asset = emu.assets[job.asset_ids[0]]
    asset["id"] = "asset_SOMEONEELSE"
    emu.inject("GET", ASSET_GET, status=200, body={"asset": asset}, times=None)
    with pytest.raises(uni1.APIError, match="asset_SOMEONEELSE"):
        job.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_planted_at_the_target_is_replaced_not_followed(emu, client, tmp_path):
    job = finished(emu, client)
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    dest = tmp_path / "dest"
    dest.mkdir()
    planted = dest / f"{job.asset_ids[0]}.png"
    planted.symlink_to(outside)
    with pytest.raises(FileExistsError):
        job.download(dest)
    assert outside.read_text() == "keep me"
    (path,) = job.download(dest, overwrite=True)
    assert outside.read_text() == "keep me"
    assert not path.is_symlink() and path.read_bytes().startswith(b"\x89PNG")


def test_concurrent_downloads_to_one_directory_stay_inside_it(emu, client, tmp_path):
    jobs = [finished(emu, client, f"p{i}") for i in range(4)]
    dest = tmp_path / "dest"
    errors = []

    def work(j):
        try:
            j.download(dest, overwrite=True)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(j,)) for j in jobs for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(os.listdir(dest)) == sorted(f"{j.asset_ids[0]}.png" for j in jobs)
    assert tree(tmp_path) == {"dest"} | {os.path.join("dest", n) for n in os.listdir(dest)}
