"""shared_client and set_credentials_provider: one client per process and
settings, credentials from the process (a provider or the environment), and
nothing secret in what a task pickles.
"""

from __future__ import annotations

import pickle

import pytest

import scenario_uni1 as uni1
from scenario_uni1 import _workers


@pytest.fixture(autouse=True)
def _fresh_cache():
    _workers.reset()
    yield
    uni1.set_credentials_provider(None)
    _workers.reset()


def test_one_client_per_process_and_settings(emu_env, tmp_path):
    a = uni1.shared_client()
    assert uni1.shared_client() is a  # the next task of the process reuses it
    assert a.base_url == emu_env.url
    journal = str(tmp_path / "j.db")
    b = uni1.shared_client(journal=journal)
    assert b is not a and b.journal == journal
    assert uni1.shared_client(journal=journal) is b
    c = uni1.shared_client(timeout=5.0)
    assert c is not a and c is not b
    a.close()
    d = uni1.shared_client()  # a closed one is replaced
    assert d is not a and not d.closed
    assert d.generate("from the shared client").id in emu_env.jobs


def test_credentials_come_from_the_provider_before_the_environment(emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "wrong-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "wrong-secret")
    calls = []

    def provider():
        calls.append(1)
        return {"api_key": emu.api_key, "api_secret": emu.api_secret}

    uni1.set_credentials_provider(provider)
    client = uni1.shared_client(base_url=emu.url)
    assert client.generate("provided").id in emu.jobs  # the environment's would be refused
    assert calls and uni1.shared_client(base_url=emu.url) is client
    # New credentials from the provider: a new client, never the old one.
    uni1.set_credentials_provider(lambda: {"bearer_token": "rotated"})
    assert uni1.shared_client(base_url=emu.url) is not client


def test_no_credentials_is_a_configuration_error(emu):
    with pytest.raises(uni1.ConfigurationError, match="no credentials"):
        uni1.shared_client(base_url=emu.url)
    uni1.set_credentials_provider(lambda: {})
    with pytest.raises(uni1.ConfigurationError, match="provider returned no credentials"):
        uni1.shared_client(base_url=emu.url)
    uni1.set_credentials_provider(lambda: {"password": "x"})
    with pytest.raises(uni1.ConfigurationError, match="mapping of api_key"):
        uni1.shared_client(base_url=emu.url)
    with pytest.raises(uni1.InvalidRequestError):
        uni1.set_credentials_provider("not callable")  # type: ignore[arg-type]


def test_credentials_are_not_settings(emu_env):
    with pytest.raises(uni1.InvalidRequestError, match="no credentials"):
        uni1.shared_client(api_key="k", api_secret="s")


def test_nothing_secret_travels_in_a_pickle(emu, monkeypatch, tmp_path):
    # What a task returns (a job, its error) and what it is given, pickled:
    # the bytes hold no credential, in any encoding the client uses.
    import base64

    key, secret = "key-AAAA1111", "secret-BBBB2222"
    emu.api_key, emu.api_secret = key, secret
    uni1.set_credentials_provider(lambda: {"api_key": key, "api_secret": secret})
    client = uni1.shared_client(base_url=emu.url, journal=str(tmp_path / "j.db"))
    job = client.generate("a pickled job")
    emu.next_job_outcome("failure", error="boom")
    failed = client.generate("a failing job")
    with pytest.raises(uni1.JobFailedError) as info:
        failed.wait(timeout=20)
    blobs = [pickle.dumps(x) for x in (job, failed, info.value, [job, failed])]
    secrets = [key, secret, base64.b64encode(f"{key}:{secret}".encode()).decode()]
    for blob in blobs:
        assert job.id.encode() in blob or failed.id.encode() in blob  # the check reads real data
        for s in secrets:
            assert s.encode() not in blob
    restored = pickle.loads(blobs[0])
    assert restored.id == job.id


CHILD = """
import pickle, sys
import scenario_uni1 as uni1

job = pickle.loads(sys.stdin.buffer.read())   # no credentials, no network
if sys.argv[1] == "provider":
    key, secret = sys.argv[2], sys.argv[3]
    uni1.set_credentials_provider(lambda: {"api_key": key, "api_secret": secret})
try:
    job.wait(timeout=30)
    print(job.status, job.client is uni1.shared_client(base_url=job.client.base_url))
except uni1.ConfigurationError as exc:
    print("ConfigurationError", exc)
"""


def test_a_pickled_job_binds_in_another_process_to_its_provider_credentials(emu, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import PACKAGE_PARENT

    with emu.client() as c:
        blob = pickle.dumps(c.generate("crossing processes"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env["PYTHONPATH"] = PACKAGE_PARENT
    script = tmp_path / "child.py"
    script.write_text(CHILD)

    def child(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            input=blob,
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout.decode().strip()

    # The provider's credentials, and the process's shared client for the job's server.
    assert child("provider", emu.api_key, emu.api_secret) == "success True"
    # Neither a provider nor the environment: the first request says so.
    assert child("none").startswith("ConfigurationError no credentials")


def test_the_default_client_takes_the_providers_credentials(emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_BASE_URL", emu.url)
    uni1.set_credentials_provider(lambda: {"api_key": emu.api_key, "api_secret": emu.api_secret})
    uni1._reset_default_client()
    assert uni1.generate("module level").id in emu.jobs


def test_a_task_run_again_on_the_same_worker_re_attaches(emu_env, tmp_path):
    # A worker process's shared client outlives its tasks: a task retried on
    # the same worker, or the whole pipeline run again there, must find the
    # rows of its first attempt, not count on from the client's last task.
    journal = str(tmp_path / "j.db")

    def task(prompt: str) -> str:
        client = uni1.shared_client(journal=journal)
        return client.generate(prompt).id

    first = task("a fox")
    assert task("a fox") == first and emu_env.jobs_created == 1
    # The engine path (submit) counts the same way.
    gen = uni1.shared_client(journal=journal).submit("a fox")
    assert gen.result(timeout=20) is not None and gen.job.id == first
    assert emu_env.jobs_created == 1
    # Within one task, identical requests are distinct items, as in a script.
    client = uni1.shared_client(journal=journal)
    a, b = client.generate("a fox"), client.generate("a fox")
    assert a.id == first and b.id != first and emu_env.jobs_created == 2
