"""Pickling jobs across processes (python-api.md, "picklable").

A pickle carries the job's state, base_url and project_id, never credentials.
Unpickling needs no credentials and no network; the first request binds the
job to a live client of that process with the same base_url and project_id,
else to one built from the environment for them (only then can
ConfigurationError arise). copy.copy keeps the original client.

The process-pool tests run their children with no SCENARIO_SDK_* variables
(conftest clears them) and put a timeout on every result: before the fix,
Pool.map hung forever and ProcessPoolExecutor broke.
"""

from __future__ import annotations

import base64
import concurrent.futures
import copy
import multiprocessing
import pickle

import _pickle_workers as workers
import pytest

import scenario_uni1 as uni1
import scenario_uni1._job
from scenario_uni1.emulator import Emulator

RESULT_TIMEOUT = 60  # seconds; a spawned child imports the package first
CONTEXTS = ["spawn", "fork"]
NOWHERE = "http://127.0.0.1:9/v1"  # the discard port: nothing answers there


def _failed_job_error(emu, client) -> uni1.JobFailedError:
    emu.next_job_outcome("failure", error="no luck", hint="try again")
    job = client.generate("fails")
    with pytest.raises(uni1.JobFailedError) as info:
        job.wait(timeout=30)
    return info.value


# -- in one process --------------------------------------------------------------------------


def test_unpickling_needs_no_credentials_and_sends_nothing(emu):
    with emu.client() as c:
        job = c.generate("a cat")
        data = pickle.dumps(job)
    emu.clear_requests()
    # No credentials in the environment, no live client for that server.
    again = pickle.loads(data)
    assert (again.id, again.status, again.cost) == (job.id, job.status, job.cost)
    assert again.raw == job.raw and repr(again) == repr(job)
    assert emu.requests == []
    # The first request is where binding happens, and where it fails.
    with pytest.raises(uni1.ConfigurationError, match="no credentials"):
        again.refresh()
    with pytest.raises(uni1.ConfigurationError, match="no credentials"):
        again.client  # noqa: B018
    assert emu.requests == []


def test_first_request_binds_to_a_live_client_with_the_same_project(emu):
    with emu.client(project_id="proj_a") as a, emu.client(project_id="proj_b") as b:
        with emu.client() as plain:
            job_a, job_b = a.generate("a"), b.generate("b")
            job_plain = plain.generate("plain")
            again_a, again_b = pickle.loads(pickle.dumps(job_a)), pickle.loads(pickle.dumps(job_b))
            again_plain = pickle.loads(pickle.dumps(job_plain))
            assert again_b.refresh().id == job_b.id
            assert again_a.client is a and again_b.client is b and again_plain.client is plain
            # A closed client is never picked: the next open one for that project is.
            a.close()
            with emu.client(project_id="proj_a") as a2:
                assert pickle.loads(pickle.dumps(job_a)).client is a2
    gets = [r for r in emu.requests if r.method == "GET" and job_b.id in r.path]
    assert [r.query.get("projectId") for r in gets] == ["proj_b"]


def test_first_request_builds_a_client_for_the_jobs_server_and_project(emu, monkeypatch):
    with emu.client(project_id="proj_p") as c:
        data = pickle.dumps(c.generate("a cat"))
    # Credentials in the environment, but a base URL that points elsewhere.
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    monkeypatch.setenv("SCENARIO_BASE_URL", NOWHERE)
    emu.clear_requests()
    first, second = pickle.loads(data), pickle.loads(data)
    assert first.wait(timeout=30).status == "success"
    assert first.client.base_url == c.base_url and first.client.project_id == "proj_p"
    assert second.client is first.client  # built once, kept for the next job
    assert {r.query.get("projectId") for r in emu.requests} == {"proj_p"}


def test_copy_keeps_the_original_client(emu):
    with emu.client() as c, emu.client() as other:
        assert other is not c
        job = c.generate("a cat")
        for duplicate in (copy.copy(job), copy.deepcopy(job), copy.deepcopy([job])[0]):
            assert duplicate is not job and duplicate.client is c
            assert (
                duplicate.id == job.id and duplicate.raw == job.raw and duplicate.cost == job.cost
            )
        duplicate = copy.copy(job)
        duplicate.wait(timeout=30)
        assert duplicate.status == "success" and job.status != "success"  # separate state
        # A copy of an unpickled, unbound job binds like the original would.
        unbound = pickle.loads(pickle.dumps(job))
        assert copy.copy(unbound).client is c


def test_pickles_hold_state_and_place_but_no_credentials():
    key, secret = "KEYpk52nNoLeak", "SECpk88qNoLeak"
    with Emulator(api_key=key, api_secret=secret, job_duration=0.2) as emu:
        with emu.client(project_id="proj_pickled") as c:
            job = c.generate("a cat")
            error = _failed_job_error(emu, c)
    forbidden = {key, secret, base64.b64encode(f"{key}:{secret}".encode()).decode()}
    for data in (pickle.dumps(job), pickle.dumps(error), pickle.dumps(error, protocol=0)):
        for secret_form in forbidden:
            assert secret_form.encode() not in data
        assert c.base_url.encode() in data and b"proj_pickled" in data
    again = pickle.loads(pickle.dumps(error))
    assert isinstance(again, uni1.JobFailedError)
    assert again.job.id == error.job.id and again.job.status == "failure"
    assert (again.error, again.hint) == ("no luck", "try again")


def test_old_pickles_without_a_server_bind_to_the_default_client(emu_env):
    """A pickle that does not record base_url and project_id binds to the default client."""
    with emu_env.client() as c:
        job = c.generate("a cat")
        old_style = pickle.dumps((scenario_uni1._job._rebuild, (job.id, None, 2.5)))
    rebuild, args = pickle.loads(old_style)
    again = rebuild(*args)
    assert again.client is uni1.default_client()
    assert again.refresh().id == job.id and again.cost == 2.5


# -- across processes: multiprocessing.Pool and ProcessPoolExecutor -------------------------


@pytest.mark.parametrize("method", CONTEXTS)
def test_pool_map_unpickles_jobs_without_credentials(emu, method):
    ctx = multiprocessing.get_context(method)
    # Workers start before any client exists, so a forked child inherits none.
    with ctx.Pool(2) as pool:
        pool.map_async(workers.warm_up, range(2)).get(RESULT_TIMEOUT)
        with emu.client() as c:
            jobs = [c.generate(f"prompt {i}") for i in range(3)]
            error = _failed_job_error(emu, c)
        emu.clear_requests()
        assert not pool.apply_async(workers.environment_has_credentials).get(RESULT_TIMEOUT)
        described = pool.map_async(workers.describe, jobs).get(RESULT_TIMEOUT)
        assert described == [(j.id, j.status, j.cost, "scenario_uni1.Job") for j in jobs]
        # A request in the child: a clean ConfigurationError, sent back to the parent.
        with pytest.raises(uni1.ConfigurationError, match="no credentials"):
            pool.apply_async(workers.refresh, (jobs[0],)).get(RESULT_TIMEOUT)
        # A JobFailedError carries a job: it crosses too.
        name, job_id, status, reason, hint = pool.apply_async(workers.describe_error, (error,)).get(
            RESULT_TIMEOUT
        )
        assert (name, job_id, status) == ("JobFailedError", error.job.id, "failure")
        assert (reason, hint) == ("no luck", "try again")
        # The pool is intact afterwards.
        assert len(pool.map_async(workers.describe, jobs).get(RESULT_TIMEOUT)) == 3
    assert emu.requests == []


@pytest.mark.parametrize("method", CONTEXTS)
def test_process_pool_executor_unpickles_jobs_without_credentials(emu, method):
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(workers.warm_up).result(RESULT_TIMEOUT)
        with emu.client() as c:
            job = c.generate("a cat")
            error = _failed_job_error(emu, c)
        emu.clear_requests()
        assert pool.submit(workers.describe, job).result(RESULT_TIMEOUT)[0] == job.id
        with pytest.raises(uni1.ConfigurationError, match="no credentials"):
            pool.submit(workers.refresh, job).result(RESULT_TIMEOUT)
        described = pool.submit(workers.describe_error, error).result(RESULT_TIMEOUT)
        assert described[:3] == ("JobFailedError", error.job.id, "failure")
        # Not broken: it still takes work.
        assert pool.submit(workers.describe, job).result(RESULT_TIMEOUT)[0] == job.id
    assert emu.requests == []


@pytest.mark.parametrize("method", CONTEXTS)
def test_job_reattaches_to_its_project_and_server_in_a_child(emu, monkeypatch, method):
    # The child has credentials, and a SCENARIO_BASE_URL that leads nowhere:
    # only the pickled base_url reaches the emulator.
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    monkeypatch.setenv("SCENARIO_BASE_URL", NOWHERE)
    ctx = multiprocessing.get_context(method)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as pool:
        pool.submit(workers.warm_up).result(RESULT_TIMEOUT)
        with emu.client(project_id="proj_child") as c:
            job = c.generate("a cat")
        with emu.client() as c2:
            plain = c2.generate("no project")
        emu.clear_requests()
        base_url, project_id = pool.submit(workers.refresh_with_project, job).result(RESULT_TIMEOUT)
        assert (base_url, project_id) == (c.base_url, "proj_child")
        assert pool.submit(workers.refresh_with_project, plain).result(RESULT_TIMEOUT) == (
            c2.base_url,
            None,
        )
    gets = [(r.path, r.query.get("projectId")) for r in emu.requests]
    assert gets == [(f"/v1/jobs/{job.id}", "proj_child"), (f"/v1/jobs/{plain.id}", None)]
