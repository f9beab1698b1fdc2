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
    _workers.set_credentials_provider(None)
    _workers.reset()


def test_one_client_per_process_and_settings(emu_env, tmp_path):
    a = _workers.shared_client()
    assert _workers.shared_client() is a  # the next task of the process reuses it
    assert a.base_url == emu_env.url
    journal = str(tmp_path / "j.db")
    b = _workers.shared_client(journal=journal)
    assert b is not a and b.journal == journal
    assert _workers.shared_client(journal=journal) is b
    c = _workers.shared_client(timeout=5.0)
    assert c is not a and c is not b
    a.close()
    d = _workers.shared_client()  # a closed one is replaced
    assert d is not a and not d.closed
    assert d.generate("from the shared client").id in emu_env.jobs


def test_credentials_come_from_the_provider_before_the_environment(emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", "wrong-key")
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "wrong-secret")
    calls = []

    def provider():
        calls.append(1)
        return {"api_key": emu.api_key, "api_secret": emu.api_secret}

    _workers.set_credentials_provider(provider)
    client = _workers.shared_client(base_url=emu.url)
    assert client.generate("provided").id in emu.jobs  # the environment's would be refused
    assert calls and _workers.shared_client(base_url=emu.url) is client
    # New credentials from the provider: a new client, never the old one.
    _workers.set_credentials_provider(lambda: {"bearer_token": "rotated"})
    assert _workers.shared_client(base_url=emu.url) is not client


def test_no_credentials_is_a_configuration_error(emu):
    with pytest.raises(uni1.ConfigurationError, match="no credentials"):
        _workers.shared_client(base_url=emu.url)
    _workers.set_credentials_provider(lambda: {})
    with pytest.raises(uni1.ConfigurationError, match="provider returned no credentials"):
        _workers.shared_client(base_url=emu.url)
    _workers.set_credentials_provider(lambda: {"password": "x"})
    with pytest.raises(uni1.ConfigurationError, match="mapping of api_key"):
        _workers.shared_client(base_url=emu.url)
    with pytest.raises(uni1.InvalidRequestError):
        _workers.set_credentials_provider("not callable")  # type: ignore[arg-type]


def test_credentials_are_not_settings(emu_env):
    with pytest.raises(uni1.InvalidRequestError, match="no credentials"):
        _workers.shared_client(api_key="k", api_secret="s")


def test_nothing_secret_travels_in_a_pickle(emu, monkeypatch, tmp_path):
    # What a task returns (a job, its error) and what it is given, pickled:
    # the bytes hold no credential, in any encoding the client uses.
    import base64

    key, secret = "key-AAAA1111", "secret-BBBB2222"
    emu.api_key, emu.api_secret = key, secret
    _workers.set_credentials_provider(lambda: {"api_key": key, "api_secret": secret})
    client = _workers.shared_client(base_url=emu.url, journal=str(tmp_path / "j.db"))
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
