"""Misuse of the binding: calls after close(), impostor objects where the C
code expects its own types, weak references to jobs.

Each test sends hostile or late calls and checks that they are refused with
the package's exceptions, before any request, and without a crash.
"""

from __future__ import annotations

import gc
import pickle
import threading
import time
import weakref
from unittest import mock

import pytest
from conftest import png_bytes

import scenario_uni1 as uni1
import scenario_uni1._job
from scenario_uni1 import _core

# -- close() while another thread's call is in flight -------------------------------------


def _every_call(client, job, tmp_path):
    """Each public entry point that may send a request, as a zero-argument callable."""
    return {
        "generate": lambda: client.generate("after close"),
        "run": lambda: client.run("after close", timeout=5),
        "_submit": lambda: client._submit("after close"),
        "estimate": lambda: client.estimate("after close"),
        "upload": lambda: client.upload(png_bytes()),
        "job": lambda: client.job(job.id),
        "list_jobs": lambda: client.list_jobs(),
        "get_asset": lambda: client.get_asset("asset_x"),
        "refresh": lambda: job.refresh(),
        "wait": lambda: job.wait(timeout=5),
        "cancel": lambda: job.cancel(),
        "images": lambda: job.images(timeout=5),
        "download": lambda: job.download(tmp_path / "out", timeout=5),
        "enter": lambda: client.__enter__(),
    }


def test_calls_after_close_send_nothing_while_a_call_is_in_flight(emu, tmp_path):
    client = emu.client(timeout=30)
    job = client._submit("before close")
    # The other thread's call hangs in a slow GET of the job.
    emu.inject("GET", "/jobs/", delay=3.0, times=None)
    emu.clear_requests()
    errors = []

    def slow_call():
        try:
            client.job(job.id)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=slow_call)
    t.start()
    deadline = time.monotonic() + 5
    while emu.request_count("GET", "/jobs/") == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert emu.request_count("GET", "/jobs/") == 1, "the slow call never started"
    client.close()
    for name, call in _every_call(client, job, tmp_path).items():
        with pytest.raises(uni1.ConfigurationError, match="closed"):
            call()
        assert len(emu.requests) == 1, f"{name} sent a request after close()"
    t.join(10)
    assert not t.is_alive()
    (exc,) = errors
    assert isinstance(exc, uni1.ConfigurationError)
    assert emu.request_count("POST") == 0 and emu.jobs_created == 1


def test_calls_after_close_send_nothing(emu, tmp_path):
    client = emu.client()
    job = client._submit("before close")
    client.close()
    emu.clear_requests()
    for name, call in _every_call(client, job, tmp_path).items():
        with pytest.raises(uni1.ConfigurationError, match="closed"):
            call()
        assert emu.requests == [], f"{name} sent a request after close()"
    assert not (tmp_path / "out").exists()


# -- impostors: objects that claim to be the binding's types ------------------------------


def _impostors():
    class FakeClass:
        __class__ = uni1.Client  # type: ignore[assignment]

    return [
        mock.Mock(spec=uni1.Client),
        mock.MagicMock(spec=_core.Client),
        mock.NonCallableMagicMock(spec_set=uni1.Client),
        FakeClass(),
        object(),
        None,
    ]


def test_mock_default_client_does_not_crash_an_unpickled_job(emu, client, monkeypatch):
    """The report: a Mock(spec=Client) as the default client, then a request of an
    unpickled job read the Mock as a C struct (heap-buffer-overflow, segfault)."""
    job = client._submit("x")
    data = pickle.dumps(job)
    client.close()
    fake = mock.Mock(spec=uni1.Client, closed=False, base_url=client.base_url, project_id=None)
    monkeypatch.setattr(uni1, "_default", fake)
    again = pickle.loads(data)
    for call in (again.refresh, again.wait, again.cancel, again.images, lambda: again.client):
        with pytest.raises(TypeError, match="must be a scenario_uni1 Client, not Mock"):
            call()
    assert len(emu.requests) == 1  # the submit


@pytest.mark.parametrize("impostor", _impostors(), ids=lambda o: type(o).__name__)
def test_impostor_picked_for_an_unpickled_job_is_a_type_error(
    emu, client, impostor, tmp_path, monkeypatch
):
    # The glue picks the client an unpickled job binds to (_job._client_for)
    # and refuses anything but a scenario_uni1.Client, before any request or
    # any directory is made.
    job = client._submit("x")
    data = pickle.dumps(job)
    monkeypatch.setattr(scenario_uni1._job, "_client_for", lambda base_url, project_id: impostor)
    again = pickle.loads(data)
    with pytest.raises(TypeError, match="must be a scenario_uni1 Client"):
        again.refresh()
    with pytest.raises(TypeError, match="must be a scenario_uni1 Client"):
        again.download(tmp_path / "never-made")
    assert not (tmp_path / "never-made").exists()
    monkeypatch.undo()
    assert pickle.loads(data).refresh().id == job.id  # the real choice again
    assert len(emu.requests) == 2  # the submit and that refresh


@pytest.mark.parametrize(
    "impostor", [*_impostors(), mock.Mock(spec=_core.Client)], ids=lambda o: type(o).__name__
)
def test_impostor_bound_by_the_binding_is_a_type_error(client, impostor):
    # The binding's own guard: Job._bind reads its argument as a C struct only
    # when its real type is the binding's Client (what __class__ claims does
    # not count), and a job stays unbound after a refusal.
    job = _core._rebuild_job("job_impostor")
    with pytest.raises(TypeError, match="must be a scenario_uni1 Client"):
        job._bind(impostor)
    with pytest.raises(RuntimeError, match="bound to no client"):
        job.refresh()
    job._bind(client._c_client)
    job._bind(client._c_client)  # the same client again: nothing changes
    other = _core.Client("k", "s", base_url=client.base_url)
    with pytest.raises(RuntimeError, match="already bound to another client"):
        job._bind(other)
    other.close()


@pytest.mark.parametrize("impostor", _impostors(), ids=lambda o: type(o).__name__)
def test_impostor_as_self_of_client_and_job_methods(impostor):
    for method, args in (
        (_core.Client.job, ("job_x",)),
        (_core.Client._submit, ("x",)),
        (_core.Client.list_jobs, ()),
        (_core.Client.close, ()),
        (_core.Job.refresh, ()),
        (_core.Job.wait, ()),
        (_core.Job.download, ()),
        (_core.Job._state, ()),
        (_core.Job._bind, (None,)),
    ):
        with pytest.raises(TypeError):
            method(impostor, *args)
    for prop in (_core.Client.base_url, _core.Client.closed, _core.Job.id, _core.Job.raw):
        with pytest.raises(TypeError):
            prop.__get__(impostor)


# -- weak references -----------------------------------------------------------------------


def test_jobs_can_be_weakly_referenced(client):
    job = client._submit("weak")
    ref = weakref.ref(job)
    assert ref() is job
    cache = weakref.WeakValueDictionary()
    cache[job.id] = job
    assert cache[job.id] is job
    job_id = job.id
    del job
    gc.collect()
    assert ref() is None
    assert job_id not in cache
    assert len(cache) == 0


# -- bad values: every argument, one rule each (csrc/binding/args.c) ----------------------

NAN, INF = float("nan"), float("inf")
HUGE = 10**400  # too large for a double
NUL, SURROGATE = "a\0b", "a\ud800b"
KEY_NUL = "KEYwithNUL\0tailXq7"  # must not be echoed in the message

BAD_SECONDS = [True, False, NAN, INF, -INF, -1, -0.5, HUGE, "5", None, b"5", [1]]
BAD_COUNT = [True, False, 1.5, NAN, -1, 2**63, HUGE, "3", None]
BAD_TEXT = [NUL, SURROGATE, 5, b"bytes"]
BAD_PATH = [NUL, SURROGATE, 5, 1.5]

SETTING_CASES = (
    [(name, v) for name in ("api_key", "api_secret") for v in [NUL, SURROGATE, KEY_NUL]]
    + [("bearer_token", v) for v in (NUL, SURROGATE, KEY_NUL)]
    + [(name, v) for name in ("base_url", "project_id", "user_agent", "proxy") for v in BAD_TEXT]
    + [(name, v) for name in ("ca_bundle", "journal") for v in BAD_PATH]
    + [(name, v) for name in ("timeout", "connect_timeout") for v in BAD_SECONDS]
    + [("stall_timeout", v) for v in BAD_SECONDS + [0] if v is not None]  # None: the default
    + [(name, v) for name in ("backoff_base", "backoff_max") for v in BAD_SECONDS if v is not False]
    + [("max_retries", v) for v in BAD_COUNT]
)


@pytest.mark.parametrize(("name", "value"), SETTING_CASES, ids=repr)
def test_bad_settings_are_configuration_errors(emu, name, value, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a journal that would be made lands here
    kwargs = {"api_key": emu.api_key, "api_secret": emu.api_secret, "base_url": emu.url}
    if name == "bearer_token":
        kwargs = {"base_url": emu.url}
    kwargs[name] = value
    with pytest.raises(uni1.ConfigurationError) as info:
        uni1.Client(**kwargs).close()
    assert type(info.value) is uni1.ConfigurationError  # not a ValueError or TypeError
    assert name in str(info.value)
    assert "tailXq7" not in str(info.value) and "KEYwithNUL" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert emu.requests == []


def _call_cases():
    t = BAD_SECONDS[:-2]  # None is a valid timeout; the others are not
    t = [v for v in t if v is not None and v != INF]
    cases = []
    for name, call in {
        "wait": lambda c, j, p, v: j.wait(timeout=v),
        "refresh": lambda c, j, p, v: j.refresh(timeout=v),
        "cancel": lambda c, j, p, v: j.cancel(timeout=v),
        "images": lambda c, j, p, v: j.images(timeout=v),
        "download": lambda c, j, p, v: j.download(p, timeout=v),
        "run": lambda c, j, p, v: c.run("x", timeout=v),
        "upload": lambda c, j, p, v: c.upload(png_bytes(), timeout=v),
        "job": lambda c, j, p, v: c.job(j.id, timeout=v),
        "list_jobs": lambda c, j, p, v: c.list_jobs(timeout=v),
        "get_asset": lambda c, j, p, v: c.get_asset("asset_x", timeout=v),
    }.items():
        cases += [(f"{name}(timeout={v!r})", call, v) for v in t + [b"5", [1]]]
    cases += [
        (f"list_jobs(page_size={v!r})", lambda c, j, p, v: c.list_jobs(page_size=v), v)
        for v in BAD_COUNT
        if v is not None
    ]
    cases += [
        (f"download(overwrite={v!r})", lambda c, j, p, v: j.download(p, overwrite=v), v)
        for v in (1, 0, NAN, "no", 2**63)
    ]
    cases += [(f"download(dest={v!r})", lambda c, j, p, v: j.download(v), v) for v in BAD_PATH]
    cases += [
        (f"generate(web_search={v!r})", lambda c, j, p, v: c.generate("x", web_search=v), v)
        for v in (1, 0, NAN, "yes", 2**63)
    ]
    for name, call in {
        "generate(prompt)": lambda c, j, p, v: c.generate(v),
        "generate(source)": lambda c, j, p, v: c.generate("x", source=v),
        "generate(image_refs)": lambda c, j, p, v: c.generate("x", image_refs=[v]),
        "generate(aspect_ratio)": lambda c, j, p, v: c.generate("x", aspect_ratio=v),
        "estimate(prompt)": lambda c, j, p, v: c.estimate(v),
        "upload(file)": lambda c, j, p, v: c.upload(v),
        "job(job_id)": lambda c, j, p, v: c.job(v),
        "get_asset(asset_id)": lambda c, j, p, v: c.get_asset(v),
        "list_jobs(status)": lambda c, j, p, v: c.list_jobs(status=v),
        "list_jobs(type)": lambda c, j, p, v: c.list_jobs(type=v),
        "list_jobs(pagination_token)": lambda c, j, p, v: c.list_jobs(pagination_token=v),
    }.items():
        cases += [(f"{name}={v!r}", call, v) for v in (NUL, SURROGATE)]
    return cases


CALL_CASES = _call_cases()


@pytest.mark.parametrize(("label", "call", "value"), CALL_CASES, ids=[c[0] for c in CALL_CASES])
def test_bad_call_arguments_are_invalid_request_errors(emu, client, tmp_path, label, call, value):
    job = client._submit("x")
    emu.clear_requests()
    with pytest.raises(uni1.InvalidRequestError) as info:
        call(client, job, tmp_path / "out", value)
    exc = info.value
    assert not isinstance(exc, (OverflowError, UnicodeError)), label
    assert isinstance(exc, TypeError) == (type(exc) is _core.InvalidRequestTypeError)
    assert emu.requests == [], f"{label} sent a request"
    assert not (tmp_path / "out").exists()


def test_huge_and_infinite_timeouts_of_calls_mean_no_deadline(client):
    job = client._submit("x")
    assert job.wait(timeout=INF).status == "success"
    assert job.refresh(timeout=2**63).status == "success"
    assert job.wait(timeout=_core.Deadline(INF)).status == "success"
    assert _core.Deadline(INF).at is None
    assert _core.Deadline(2**63).at >= float(2**63)
    with pytest.raises(uni1.InvalidRequestError, match="too large"):
        _core.Deadline(HUGE)


def test_resume_timeout_is_checked_like_every_other(emu, tmp_path):
    with emu.client(journal=tmp_path / "j") as c:
        for value in (True, NAN, -1, HUGE, "5"):
            with pytest.raises(uni1.InvalidRequestError):
                c.resume(timeout=value)
    assert emu.requests == []
