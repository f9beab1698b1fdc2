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
def test_impostor_from_the_client_hook_is_a_type_error(emu, client, impostor, tmp_path):
    job = client._submit("x")
    data = pickle.dumps(job)
    glue = dict(
        image_factory=uni1._image_factory,
        path_factory=uni1._path_factory,
        progress_factory=uni1._progress_factory,
    )
    _core._set_glue(client_for=lambda base_url, project_id: impostor, **glue)
    try:
        again = pickle.loads(data)
        with pytest.raises(TypeError, match="must be a scenario_uni1 Client"):
            again.refresh()
        with pytest.raises(TypeError, match="must be a scenario_uni1 Client"):
            again.download(tmp_path / "never-made")
        assert not (tmp_path / "never-made").exists()
    finally:
        _core._set_glue(client_for=uni1._client_for, **glue)
    assert pickle.loads(data).refresh().id == job.id  # the real hook again


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
        (_core.Job.__reduce__, ()),
    ):
        with pytest.raises(TypeError):
            method(impostor, *args)
    for prop in (_core.Client.base_url, _core.Client.closed, _core.Job.id, _core.Job.client):
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
