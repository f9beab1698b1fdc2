"""Smoke tests of the C binding (scenario_uni1._core) itself, against the emulator.

They exercise what only the binding does: the module's shape, the exception
classes and the mapping of core failures to them, the GIL released during
network waits, Ctrl-C, cancel() and close() from another thread, the refusal
of two concurrent waits, pickling, and a client shared by 16 threads.
"""

from __future__ import annotations

import builtins
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import scenario_uni1 as uni1
from scenario_uni1 import _core

# -- the module ----------------------------------------------------------------------


def test_module_constants():
    assert _core.__version__ == uni1.__version__
    assert isinstance(_core.curl_version, str) and _core.curl_version[0].isdigit()
    assert "16:9" in _core.ASPECT_RATIOS and isinstance(_core.ASPECT_RATIOS, tuple)
    assert _core.OUTPUT_FORMATS == ("png", "jpeg")
    assert _core.DEFAULT_BASE_URL == "https://api.cloud.scenario.com/v1"


def test_exception_hierarchy():
    E = _core
    assert issubclass(E.InvalidRequestError, (E.Uni1Error, ValueError))
    assert issubclass(E.InvalidRequestError, ValueError)
    assert issubclass(E.InvalidRequestTypeError, E.InvalidRequestError)
    assert issubclass(E.InvalidRequestTypeError, TypeError)
    for cls in (
        E.AuthenticationError,
        E.PermissionDeniedError,
        E.NotFoundError,
        E.RateLimitError,
        E.ServerError,
    ):
        assert issubclass(cls, E.APIError) and issubclass(cls, E.Uni1Error)
    assert issubclass(E.ConnectionError, builtins.ConnectionError)
    assert issubclass(E.TimeoutError, builtins.TimeoutError)
    assert issubclass(E.JobFailedError, E.JobError)
    assert issubclass(E.JobCanceledError, E.JobError)
    assert E.APIError("x").status_code is None  # class defaults
    assert E.RateLimitError("x").retry_after is None
    assert E.JobError("x").job is None
    assert E.Uni1Error.__module__ == "scenario_uni1"


def test_job_cannot_be_made_from_python():
    with pytest.raises(TypeError):
        _core.Job()


def test_wrong_types_are_type_and_invalid_request_errors():
    for kwargs in (
        {"prompt": 1},
        {"prompt": "x", "aspect_ratio": 1.5},
        {"prompt": "x", "image_refs": "asset_a"},
        {"prompt": "x", "web_search": "yes"},
    ):
        with pytest.raises(TypeError) as info:
            _core.validate_generate(**kwargs)
        assert isinstance(info.value, uni1.InvalidRequestError)
    with pytest.raises(TypeError):
        _core.validate_generate("x", nonsense=1)
    with pytest.raises(uni1.InvalidRequestError):
        _core.validate_generate("x\0y")
    assert _core.validate_generate("x", "asset_a", ["asset_b"], "1:1", "jpeg", True) is None


def test_no_credentials_message():
    with pytest.raises(uni1.ConfigurationError, match="no credentials"):
        _core.Client()


# -- the client ------------------------------------------------------------------------


def test_repr_and_messages_never_show_credentials(emu):
    secret = "TOPSECRET-s3cr3t"
    c = _core.Client("KEY-k3y", secret, base_url=emu.url)
    assert secret not in repr(c) and "KEY-k3y" not in repr(c)
    assert repr(c).startswith("<scenario_uni1._core.Client base_url=")
    with pytest.raises(uni1.AuthenticationError) as info:
        c.job("job_x")
    text = repr(info.value) + str(info.value) + str(info.value.body)
    assert secret not in text and "KEY-k3y" not in text
    assert info.value.status_code == 401 and info.value.retryable is False


@pytest.mark.parametrize("name", ["Client", "Job", "Generation"])
def test_binding_types_are_final(name):
    # The glue composes them (scenario_uni1.Client holds a _core.Client,
    # scenario_uni1.Job a _core.Job): nothing subclasses them.
    with pytest.raises(TypeError):
        type("Sub", (getattr(_core, name),), {})


def test_public_types_hold_the_binding_types(emu):
    with uni1.Client(emu.api_key, emu.api_secret, base_url=emu.url) as c:
        assert not isinstance(c, _core.Client) and isinstance(c._c_client, _core.Client)
        job = c._submit("composed")
        assert type(job) is uni1.Job and type(job._job) is _core.Job
        assert job.client is c and c.job(job.id).client is c
        gen = c.submit("composed too")
        assert gen.client is c and type(gen.result(timeout=30)[0]) is uni1.Image
        assert type(gen.job) is uni1.Job and gen.job is gen.job and gen.job.client is c
        with pytest.raises(RuntimeError, match="only be called once"):
            c.__init__(emu.api_key, emu.api_secret, base_url=emu.url)
    with pytest.raises(TypeError, match="made by a Client"):
        uni1.Job()
    assert not hasattr(_core, "_set_glue")


def test_client_init_runs_once(emu):
    c = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url)
    with pytest.raises(RuntimeError, match="only be called once"):
        c.__init__(emu.api_key, emu.api_secret)
    c.close()


def test_close_then_calls_raise(emu):
    c = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url)
    job = c._submit("x")
    with c:
        pass
    assert c.closed
    with pytest.raises(uni1.ConfigurationError, match="client is closed"):
        job.refresh()
    with pytest.raises(uni1.ConfigurationError, match="client is closed"):
        c.job(job.id)
    c.close()  # twice is fine


def test_http_errors_map_to_classes(emu):
    client = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url, max_retries=0)
    cases = [
        (403, uni1.PermissionDeniedError),
        (404, uni1.NotFoundError),
        (400, uni1.APIError),
        (503, uni1.ServerError),
    ]
    for status, cls in cases:
        emu.inject(
            "GET", r"^/v1/jobs/", status=status, body={"reason": f"nope {status}"}, times=None
        )
        with pytest.raises(cls) as info:
            client.job("job_abc")
        emu.clear_faults()
        assert info.value.status_code == status
        assert info.value.reason == f"nope {status}"
        assert "nope" in info.value.body
        assert info.value.retryable == (status >= 500)
    emu.inject("GET", r"^/v1/jobs/", status=429, headers={"Retry-After": "7"}, times=None)
    with pytest.raises(uni1.RateLimitError) as info:
        client.job("job_abc")
    assert info.value.retry_after == 7.0 and info.value.retryable


def test_http_error_reason_comes_from_the_answer_not_its_wording(emu):
    # The binding knows whether the server gave a message from a field of the
    # core's error, not by comparing the text with "HTTP <n>": a server whose
    # message happens to read "HTTP 404" still has its reason reported.
    client = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url, max_retries=0)
    emu.inject("GET", r"^/v1/jobs/", status=404, body={"message": "HTTP 404"}, times=None)
    with pytest.raises(uni1.NotFoundError) as info:
        client.job("job_abc")
    assert info.value.reason == "HTTP 404"
    assert str(info.value) == "HTTP 404: HTTP 404"
    emu.clear_faults()
    emu.inject("GET", r"^/v1/jobs/", status=404, body=b"", times=None)
    with pytest.raises(uni1.NotFoundError) as info:
        client.job("job_abc")
    assert info.value.reason is None
    assert str(info.value) == "HTTP 404"
    client.close()


def test_malformed_answer_is_api_error(emu, client):
    emu.inject("GET", r"^/v1/jobs/", status=200, body="this is not json", times=None)
    with pytest.raises(uni1.APIError, match="^malformed response from server") as info:
        client.job("job_abc")
    assert info.value.retryable is False


def test_connection_refused_is_connection_error():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = _core.Client("k", "s", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    with pytest.raises(uni1.ConnectionError) as info:
        c.job("job_x")
    assert isinstance(info.value, builtins.ConnectionError)


def test_uncertain_submission_carries_request_and_time(emu):
    c = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url, max_retries=0)
    emu.inject("POST", r"^/v1/generate/", action="drop_after", times=None)
    emu.inject("GET", r"^/v1/jobs$", status=500, times=None)
    with pytest.raises(uni1.SubmissionUncertainError) as info:
        c._submit("maybe sent", aspect_ratio="1:1")
    assert info.value.request["prompt"] == "maybe sent"
    assert info.value.request["aspectRatio"] == "1:1"
    assert info.value.sent_at.endswith("Z") and "T" in info.value.sent_at


# -- jobs ----------------------------------------------------------------------------


def test_submit_wait_progress_images_download(emu, client, tmp_path):
    job = client._submit("a lighthouse", aspect_ratio="16:9")
    assert job.cost == 10.0 and not job.done
    assert repr(job).startswith(f"<scenario_uni1.Job id='{job.id}' status=")
    seen = []
    assert job.wait(timeout=30, progress=lambda j: seen.append((j.status, j.progress))) is job
    assert seen and seen[-1] == ("success", 1.0)
    assert job.done and job.raw["status"] == "success" and len(job.asset_ids) == 1
    (img,) = job.images()
    assert img.mime_type == "image/png" and img.data.startswith(b"\x89PNG")
    (path,) = job.download(tmp_path / "out" / "deeper")
    assert path.name == f"{job.asset_ids[0]}.png" and path.read_bytes() == img.data
    with pytest.raises(FileExistsError):
        job.download(tmp_path / "out" / "deeper")
    assert job.download(tmp_path / "out" / "deeper", overwrite=True) == [path]


def test_the_binding_takes_callables_per_call_only(emu, tmp_path):
    # No callable is handed to the C client at creation; what a call needs
    # (a progress callable, a skip predicate) is an argument of that call,
    # and the binding returns raw results (image fields, what it wrote) for
    # the glue to make Images of and to record.
    with pytest.raises(TypeError):
        _core.Client(emu.api_key, emu.api_secret, base_url=emu.url, _download_skip=print)
    c = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url)
    emu.outputs_per_job = 2
    job = c._submit("per call")
    seen, asked = [], []
    assert job.wait(timeout=30, progress=seen.append) is job
    assert seen and seen[-1] is job
    with pytest.raises(uni1.InvalidRequestError, match="progress must be"):
        job.wait(timeout=30, progress=42)

    def skip(asset_id, path):
        asked.append((asset_id, path))
        return len(asked) == 1  # the first file is "already there"

    cdn = emu.request_count("GET", origin="cdn")
    written = job.download(tmp_path / "out", timeout=30, skip=skip)
    assert [(a, str(p)) for a, p, _ in written] == asked
    assert [a for a, _, _ in written] == list(job.asset_ids)
    assert [fetched for _, _, fetched in written] == [False, True]
    assert emu.request_count("GET", origin="cdn") == cdn + 1
    assert not written[0][1].exists() and written[1][1].exists()
    with pytest.raises(uni1.InvalidRequestError, match="skip must be"):
        job.download(tmp_path / "out", skip=42)
    fields = job.images(timeout=30)
    data, mime, asset_id, width, height = fields[1]
    assert isinstance(data, bytes) and mime == "image/png" and asset_id == job.asset_ids[1]
    assert data == written[1][1].read_bytes() and (width, height) != (None, None)
    c.close()


def test_progress_callback_exception_propagates(emu, client):
    emu.job_duration = 5
    job = client._submit("x")

    def boom(j):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        job.wait(progress=boom)


def test_failed_and_canceled_jobs(emu, client):
    emu.next_job_outcome("failure", error="model said no", hint="try again")
    job = client._submit("x")
    with pytest.raises(uni1.JobFailedError) as info:
        job.wait(timeout=30)
    assert info.value.job is job and info.value.error == "model said no"
    assert info.value.hint == "try again"
    with pytest.raises(uni1.JobFailedError):  # already terminal: raises at once
        job.wait()
    emu.next_job_outcome("canceled")
    job = client._submit("y")
    with pytest.raises(uni1.JobCanceledError) as info:
        job.wait(timeout=30)
    assert info.value.job is job


def test_wait_timeout(emu, client):
    emu.job_duration = 100
    job = client._submit("slow")
    t0 = time.monotonic()
    with pytest.raises(uni1.TimeoutError):
        job.wait(timeout=0.4)
    assert time.monotonic() - t0 < 2.0


def test_cancel_stops_a_wait_in_another_thread(emu, client):
    emu.job_duration = 100
    job = client._submit("to cancel")
    errors = []

    def waiter():
        try:
            job.wait(timeout=60)
        except BaseException as exc:  # noqa: BLE001
            errors.append((exc, time.monotonic()))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    # the second wait on the same job is refused, not queued
    with pytest.raises(RuntimeError, match="already running"):
        job.wait()
    t0 = time.monotonic()
    with pytest.raises(uni1.APIError) as info:  # the emulator refuses, as the live API does
        job.cancel()
    assert info.value.status_code == 400
    t.join(10)
    assert not t.is_alive()
    ((exc, when),) = errors
    assert isinstance(exc, uni1.JobCanceledError) and exc.job is job
    assert when - t0 < 0.5


def test_close_stops_a_wait_in_another_thread(emu):
    emu.job_duration = 100
    c = _core.Client(emu.api_key, emu.api_secret, base_url=emu.url)
    job = c._submit("x")
    errors = []

    def waiter():
        try:
            job.wait()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    c.close()
    t.join(5)
    assert not t.is_alive()
    (exc,) = errors
    assert isinstance(exc, uni1.ConfigurationError) and "closed" in str(exc)


def test_gil_is_released_while_waiting(emu, client):
    emu.job_duration = 1.0
    job = client._submit("x")
    counter = 0
    stop = threading.Event()

    def spin():
        nonlocal counter
        while not stop.is_set():
            counter += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        job.wait(timeout=30)
    finally:
        stop.set()
        t.join()
    assert counter > 10_000


def test_pickle_reattaches_to_a_live_client_for_its_server(emu_env, client):
    job = client._submit("pickled")
    copy = pickle.loads(pickle.dumps(job))
    assert copy.id == job.id and copy.cost == job.cost and copy.raw == job.raw
    assert copy.client is client  # alive, same base_url and project_id
    assert copy.wait(timeout=30).status == "success"


def test_sixteen_threads_share_one_client(emu, client):
    results, errors = [], []

    def work(i):
        try:
            job = client._submit(f"prompt {i}")
            job.wait(timeout=60)
            results.append(len(job.images()[0].data))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 16
    assert client.request_count == emu.request_count()


def test_jobs_are_freed(emu, client):
    import gc

    base = sys.getrefcount(client)
    jobs = [client._submit(f"p{i}") for i in range(20)]
    assert sys.getrefcount(client) == base + 20
    del jobs
    gc.collect()
    assert sys.getrefcount(client) == base


# -- Ctrl-C ---------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, time
    from scenario_uni1 import _core
    url, key, secret, op, job_id = sys.argv[1:6]
    c = _core.Client(key, secret, base_url=url)
    job = c.job(job_id)
    print("READY", flush=True)
    sys.stdin.readline()
    try:
        if op == "wait":
            job.wait()
        else:
            job.refresh()
        print("RETURNED", flush=True)
    except KeyboardInterrupt:
        print("KI", time.monotonic(), flush=True)
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("op", ["wait", "refresh"])
def test_ctrl_c_interrupts_within_100ms(uni1_emulator, op):
    emu = uni1_emulator
    emu.next_job_outcome("stuck")
    c = emu.client()
    job = c._submit("never ends")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, emu.url, emu.api_key, emu.api_secret, op, job.id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        if op == "refresh":  # the child's refresh now hangs on a slow server
            emu.inject("GET", r"^/v1/jobs/", delay=30, times=None)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        proc.wait(10)
    finally:
        proc.kill()
    assert line and line[0] == "KI", line
    latency = float(line[1]) - t0
    # The core checks at least every 50 ms; leave room for a loaded CI box.
    assert latency < 0.25, latency
