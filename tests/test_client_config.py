"""Client settings: environment fallback, precedence, base URL, secrecy, pickling."""

from __future__ import annotations

import base64
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading

import pytest
from conftest import FAST_JOB, PACKAGE_PARENT, png_bytes

import scenario_uni1 as uni1
from scenario_uni1.emulator import Emulator

# Distinctive fake credentials: any appearance in output is a leak.
KEY = "KEYzq81vXwLeak7"
SECRET = "SECqq92mNoLeak4"
TOKEN = "TOKjj37pBearer9"
WRONG = "WRONGsecret55xyz"
SECRETS = (KEY, SECRET, TOKEN, WRONG)


def _encoded_forms():
    forms = set(SECRETS)
    for pair in (f"{KEY}:{SECRET}", f"{KEY}:{WRONG}"):
        forms.add(base64.b64encode(pair.encode()).decode())
    return forms


@pytest.fixture
def secret_emu():
    with Emulator(api_key=KEY, api_secret=SECRET, bearer_token=TOKEN, job_duration=FAST_JOB) as e:
        yield e


def _works(client) -> None:
    """One authenticated request that succeeds."""
    assert client.estimate("a cat") > 0


# -- environment and precedence ----------------------------------------------------------


def test_env_fallback(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    monkeypatch.setenv("SCENARIO_BASE_URL", secret_emu.url)
    with uni1.Client() as c:
        assert c.base_url == secret_emu.url
        _works(c)
    auth = secret_emu.requests[-1].headers["authorization"]
    assert auth == "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()


def test_env_bearer_token(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_JWT", TOKEN)
    with uni1.Client(base_url=secret_emu.url) as c:
        _works(c)
    assert secret_emu.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_explicit_credentials_win_over_env(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "env-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "env-secret")
    monkeypatch.setenv("SCENARIO_SDK_JWT", "env-token")
    with uni1.Client(KEY, SECRET, base_url=secret_emu.url) as c:
        _works(c)
    assert secret_emu.requests[-1].headers["authorization"].startswith("Basic ")


def test_explicit_wrong_credentials_are_not_rescued_by_env(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    with (
        uni1.Client(KEY, WRONG, base_url=secret_emu.url) as c,
        pytest.raises(uni1.AuthenticationError),
    ):
        c.estimate("a cat")


def test_explicit_bearer_wins_over_env_key_and_secret(secret_emu, monkeypatch):
    # The official SDK gets this wrong: an explicit token must win.
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "env-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "env-secret")
    with uni1.Client(bearer_token=TOKEN, base_url=secret_emu.url) as c:
        _works(c)
    assert secret_emu.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_env_key_and_secret_win_over_env_token(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    monkeypatch.setenv("SCENARIO_SDK_JWT", "stale-token")
    with uni1.Client(base_url=secret_emu.url) as c:
        _works(c)


def test_explicit_base_url_wins_over_env(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_BASE_URL", "http://127.0.0.1:9/v1")
    with uni1.Client(KEY, SECRET, base_url=secret_emu.url) as c:
        assert c.base_url == secret_emu.url
        _works(c)


def test_half_pairs_and_missing_credentials_are_configuration_errors(monkeypatch):
    with pytest.raises(uni1.ConfigurationError, match="SCENARIO_SDK_API_KEY"):
        uni1.Client()
    with pytest.raises(uni1.ConfigurationError):
        uni1.Client(api_key=KEY)
    with pytest.raises(uni1.ConfigurationError):
        uni1.Client(api_secret=SECRET)
    with pytest.raises(uni1.ConfigurationError):
        uni1.Client(KEY, SECRET, bearer_token=TOKEN)
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    with pytest.raises(uni1.ConfigurationError, match="SCENARIO_SDK_API_SECRET"):
        uni1.Client()
    monkeypatch.setenv("SCENARIO_SDK_JWT", TOKEN)
    with pytest.raises(uni1.ConfigurationError):
        uni1.Client()  # half a pair is never silently replaced by the token
    with pytest.raises(uni1.ConfigurationError):
        uni1.Client(api_key=123)  # type: ignore[arg-type]
    assert not isinstance(uni1.ConfigurationError("x"), ValueError)


def test_explicit_key_takes_secret_from_env(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    with uni1.Client(api_key=KEY, base_url=secret_emu.url) as c:
        _works(c)


def test_base_url_without_path_gets_v1(secret_emu):
    origin = secret_emu.url.rsplit("/v1", 1)[0]
    assert secret_emu.url == origin + "/v1"
    with uni1.Client(KEY, SECRET, base_url=origin) as c:
        assert c.base_url == origin + "/v1"
        _works(c)
    with uni1.Client(KEY, SECRET, base_url=origin + "/") as c:
        assert c.base_url == origin + "/v1"


def test_default_base_url():
    with uni1.Client(KEY, SECRET) as c:
        assert c.base_url == "https://api.cloud.scenario.com/v1"
        assert c.timeout == 60.0 and c.max_retries == 3 and c.project_id is None


def test_settings_are_kept(secret_emu):
    with uni1.Client(
        KEY, SECRET, base_url=secret_emu.url, project_id="proj_1", timeout=5.0, max_retries=1
    ) as c:
        assert c.project_id == "proj_1" and c.timeout == 5.0 and c.max_retries == 1
        _works(c)
    assert secret_emu.requests[-1].query.get("projectId") == "proj_1"


def test_journal_is_accepted_and_kept(tmp_path):
    path = tmp_path / "journal.jsonl"
    with uni1.Client(KEY, SECRET, journal=path) as c:
        assert c.journal == str(path)
    assert path.exists()  # the journal (SQLite) is created when the client is


def test_close_and_context_manager(secret_emu):
    c = uni1.Client(KEY, SECRET, base_url=secret_emu.url)
    with c as entered:
        assert entered is c and not c.closed
    assert c.closed
    c.close()  # idempotent
    assert "closed" in repr(c)


def test_client_is_not_picklable():
    with uni1.Client(KEY, SECRET) as c, pytest.raises(TypeError):
        pickle.dumps(c)


def test_default_client_is_built_once_across_threads(secret_emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    monkeypatch.setenv("SCENARIO_BASE_URL", secret_emu.url)
    uni1._reset_default_client()
    seen = []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        seen.append(uni1.default_client())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and all(c is seen[0] for c in seen)


def test_default_client_without_credentials_is_configuration_error():
    with pytest.raises(uni1.ConfigurationError):
        uni1.generate("a cat")


# -- no secrets anywhere ------------------------------------------------------------------


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _provoke_every_api_error(emu) -> list:
    errors = []

    def expect(cls, fn):
        with pytest.raises(cls) as info:
            fn()
        errors.append(info.value)

    with uni1.Client(KEY, SECRET, base_url=emu.url, max_retries=0, timeout=5) as c:
        job = c.generate("a cat")
        for status, cls in (
            (403, uni1.PermissionDeniedError),
            (429, uni1.RateLimitError),
            (503, uni1.ServerError),
        ):
            emu.inject(method="GET", path="^/v1/jobs/", status=status, times=1)
            expect(cls, job.refresh)
        emu.next_job_outcome("canceled")
        expect(uni1.JobCanceledError, c.generate("a dog").wait)
        emu.next_job_outcome("stuck")
        stuck = c.generate("a bird")
        expect(uni1.TimeoutError, lambda: stuck.wait(timeout=0.3))
        # A submission whose answer is lost and whose job cannot be looked up.
        emu.inject(method="POST", path="^/v1/generate/", action="drop_after")
        emu.inject(method="GET", path="^/v1/jobs$", status=500, times=None)
        expect(uni1.SubmissionUncertainError, lambda: c.generate("lost"))
        emu.clear_faults()
    return errors


def test_no_credentials_in_reprs_errors_or_logs(secret_emu, caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger="scenario_uni1")
    texts: list[str] = []

    def collect(obj):
        texts.append(repr(obj))
        texts.append(str(obj))
        if isinstance(obj, BaseException):
            texts.extend(str(a) for a in obj.args)
            for attr in ("reason", "body", "error", "hint", "request", "sent_at", "trace_id"):
                texts.append(str(getattr(obj, attr, "")))

    for client in (
        uni1.Client(KEY, SECRET, base_url=secret_emu.url),
        uni1.Client(bearer_token=TOKEN, base_url=secret_emu.url),
    ):
        with client:
            collect(client)
            job = client.generate("a cat", image_refs=[png_bytes()])
            collect(job)
            job.wait(timeout=20)
            collect(job)
            texts.append(repr(job.raw))
            collect(job.images()[0])
            job.download(tmp_path, overwrite=True)
            with pytest.raises(uni1.NotFoundError) as info:
                client.job("job_missing000000000000000")
            collect(info.value)
            with pytest.raises(uni1.APIError) as info:
                job.cancel()
            collect(info.value)
            secret_emu.next_job_outcome("failure", error="nope", hint="try again")
            failing = client.generate("a dog")
            with pytest.raises(uni1.JobFailedError) as info:
                failing.wait(timeout=20)
            collect(info.value)
            collect(info.value.job)
            with pytest.raises(uni1.InvalidRequestError) as info:
                client.generate("")
            collect(info.value)
    # Every other error class, each provoked for real.
    errors = _provoke_every_api_error(secret_emu)
    assert {type(e).__name__ for e in errors} >= {
        "PermissionDeniedError",
        "RateLimitError",
        "ServerError",
        "SubmissionUncertainError",
        "JobCanceledError",
        "TimeoutError",
    }
    for err in errors:
        collect(err)
    with uni1.Client(KEY, WRONG, base_url=secret_emu.url) as bad:
        collect(bad)
        with pytest.raises(uni1.AuthenticationError) as info:
            bad.generate("a cat")
        collect(info.value)
    with uni1.Client(
        KEY, SECRET, base_url=f"http://127.0.0.1:{_closed_port()}/v1", max_retries=0, timeout=2
    ) as dead:
        with pytest.raises(uni1.ConnectionError) as info:
            dead.job("job_abc")
        collect(info.value)
    with pytest.raises(uni1.ConfigurationError) as info:
        uni1.Client(api_key=KEY)
    collect(info.value)
    texts.extend(record.getMessage() for record in caplog.records)
    texts.append(caplog.text)

    blob = "\n".join(texts)
    assert "job_" in blob  # the collection did happen
    for secret in _encoded_forms():
        assert secret not in blob, f"credential {secret!r} leaked"


def test_debug_logging_emits_without_secrets(secret_emu, caplog):
    caplog.set_level(logging.DEBUG, logger="scenario_uni1")
    with uni1.Client(KEY, SECRET, base_url=secret_emu.url) as c:
        c.generate("a cat", source=png_bytes()).wait(timeout=20)
    assert caplog.records, "nothing was logged at DEBUG"
    for secret in _encoded_forms():
        assert secret not in caplog.text


# -- pickling jobs ---------------------------------------------------------------------------


def test_job_pickles_and_reattaches_through_default_client(secret_emu, monkeypatch):
    with uni1.Client(KEY, SECRET, base_url=secret_emu.url) as c:
        job = c.generate("a cat")
        cost = job.cost
        data = pickle.dumps(job)
    for secret in _encoded_forms():
        assert secret.encode() not in data
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", KEY)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", SECRET)
    monkeypatch.setenv("SCENARIO_BASE_URL", secret_emu.url)
    uni1._reset_default_client()
    again = pickle.loads(data)
    assert isinstance(again, uni1.Job)
    assert again.id == job.id and again.cost == cost
    assert again.client is uni1.default_client()
    assert again.wait(timeout=20).status == "success"
    assert again.images()[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    assert job.id in repr(again) and again.status in repr(again)


ROOT = PACKAGE_PARENT  # what a child puts on PYTHONPATH to import the package under test


def _python(code: str, *, env: dict | None = None, stdin: bytes = b""):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        input=stdin,
        capture_output=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_job_unpickles_in_a_fresh_process(secret_emu):
    """A worker that only unpickles (no other use of the package) gets a working Job."""
    with uni1.Client(KEY, SECRET, base_url=secret_emu.url) as c:
        data = pickle.dumps(c.generate("a cat"))
    code = (
        "import pickle, sys\n"
        "job = pickle.loads(sys.stdin.buffer.read())\n"
        "job.wait(timeout=20)\n"
        "images = job.images()\n"
        "print(job.status, type(images[0]).__module__, images[0].mime_type)\n"
    )
    env = {
        "SCENARIO_SDK_API_KEY": KEY,
        "SCENARIO_SDK_API_SECRET": SECRET,
        "SCENARIO_BASE_URL": secret_emu.url,
    }
    proc = _python(code, env=env, stdin=data)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["success", "scenario_uni1._image", "image/png"]


def test_import_is_lazy_and_names_resolve():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import scenario_uni1 as u\n"
        "assert 'scenario_uni1._core' not in sys.modules, 'extension loaded at import'\n"
        "# an editable install's path hook may load some of these first: only\n"
        "# what importing scenario_uni1 itself adds counts\n"
        "added = set(sys.modules) - before\n"
        "for heavy in ('json', 'logging', 'pathlib', 'PIL', 'asyncio', 'typing'):\n"
        "    assert heavy not in added, heavy\n"
        "assert u.__version__ == u._core.__version__\n"
        "assert set(u.__all__) <= set(dir(u))\n"
        "for name in u.__all__:\n"
        "    getattr(u, name)\n"
        "assert u.Job.__module__ == 'scenario_uni1' and u.Job is not u._core.Job\n"
        "assert not issubclass(u.Client, u._core.Client)  # it holds one\n"
        "assert issubclass(u.InvalidRequestError, ValueError)\n"
        "try:\n"
        "    u.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
        "print('ok')\n"
    )
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "ok"


def test_debug_logging_from_the_environment(secret_emu):
    code = "import scenario_uni1 as u; print(u.Client().estimate('a cat'))"
    env = {
        "SCENARIO_SDK_API_KEY": KEY,
        "SCENARIO_SDK_API_SECRET": SECRET,
        "SCENARIO_BASE_URL": secret_emu.url,
        "SCENARIO_UNI1_LOG": "debug",
    }
    proc = _python(code, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "scenario_uni1" in err and "DEBUG" in err
    for secret in _encoded_forms():
        assert secret not in err
    quiet = _python(code, env={**env, "SCENARIO_UNI1_LOG": ""})
    assert quiet.returncode == 0 and quiet.stderr.decode() == ""
