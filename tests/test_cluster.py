"""Exactly once across processes: many processes on one SQLite journal, a Dask
LocalCluster (2 worker processes) and local Ray (num_cpus=2) on a PostgreSQL
ledger or an SQLite journal, with a worker killed by SIGKILL mid-batch.

What is asserted is what a user pays for and keeps: the emulator counts
exactly one job per item, every item's file is there with the SHA-256 of the
bytes the emulator serves, and a job pickled back from a worker works here.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import sys
import time

import _cluster_tasks as tasks
import _postgres
import pytest
from conftest import PACKAGE_PARENT

import scenario_uni1 as uni1

pytestmark = pytest.mark.cluster
postgres_server = _postgres.postgres_server

HERE = os.path.dirname(os.path.abspath(__file__))


def _creds(emu) -> dict:
    return {"SCENARIO_SDK_API_KEY": emu.api_key, "SCENARIO_SDK_API_SECRET": emu.api_secret}


def check_batch(emu, results: list, prompts: list) -> None:
    """One job per item on the emulator, each item's file intact, the pickled jobs usable here."""
    assert emu.jobs_created == len(set(prompts)), f"{emu.jobs_created} jobs for {len(prompts)}"
    by_prompt = {r["prompt"]: r for r in results}
    assert sorted(by_prompt) == sorted(set(prompts))
    assert len({r["job"].id for r in results}) == len(set(prompts))
    for r in results:
        (path, digest), *_ = r["files"]
        asset_id = os.path.basename(path).partition(".")[0]
        served = hashlib.sha256(emu.asset_bytes(asset_id)).hexdigest()
        assert digest == served == tasks.sha256_of(path)
    with emu.client() as here:  # the unpickled jobs bind to this client (same base_url)
        job = results[0]["job"]
        assert job.refresh().status == "success" and here.base_url == emu.url


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_journal(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "journal.db")
    return request.getfixturevalue("postgres_server").create_database()


def test_four_processes_on_one_journal_pay_for_each_item_once(
    emu, shared_journal, tmp_path, monkeypatch
):
    for name, value in _creds(emu).items():
        monkeypatch.setenv(name, value)  # the children's environment
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([PACKAGE_PARENT, HERE]))
    emu.job_duration = 0.2
    prompts = [f"item {i}" for i in range(12)]
    # Each process downloads into a directory of its own: two live processes
    # fetching the same file to the same path race on it (the second one
    # finds it there), which the journal does not arbitrate.
    outs = [str(tmp_path / f"out{i}") for i in range(4)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        # The same items in the same order: the four collide on every one.
        runs = pool.starmap(
            tasks.render_all, [(prompts, emu.url, shared_journal, out) for out in outs]
        )
    assert all(run == runs[0] for run in runs)  # every process got the same job per item
    assert emu.jobs_created == len(prompts)
    assert sorted(runs[0]) == sorted(emu.jobs)
    for out in outs:
        names = sorted(os.listdir(out))
        assert len(names) == len(prompts)
        for name in names:
            served = emu.asset_bytes(name.partition(".")[0])
            assert tasks.sha256_of(os.path.join(out, name)) == hashlib.sha256(served).hexdigest()


# -- Dask ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster(uni1_emulator_session):
    distributed = pytest.importorskip("distributed")
    env = {**_creds(uni1_emulator_session), "PYTHONPATH": os.pathsep.join([PACKAGE_PARENT, HERE])}
    cluster = distributed.LocalCluster(
        n_workers=2,
        host="127.0.0.1",  # loopback only
        threads_per_worker=4,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
        env=env,  # also for a worker the nanny starts again after a kill
    )
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _worker_pids(client) -> dict:
    return client.run(tasks.pid)


def test_dask_worker_killed_mid_batch_pays_for_nothing_twice(
    emu, dask_cluster, postgres_server, tmp_path
):
    from distributed import as_completed

    client = dask_cluster
    emu.job_duration = 0.4
    journal = postgres_server.create_database()
    prompts = [f"dask item {i}" for i in range(40)]
    out = str(tmp_path / "out")
    futures = client.map(tasks.render, prompts, base_url=emu.url, journal=journal, out=out)
    pids = _worker_pids(client)
    victim = sorted(pids.values())[0]
    killed = False
    for done, _ in enumerate(as_completed(futures), 1):
        if done == 10 and not killed:
            os.kill(victim, signal.SIGKILL)  # tasks in flight there are retried elsewhere
            killed = True
    results = client.gather(futures)
    assert killed
    check_batch(emu, results, prompts)
    print(
        f"\ndask kill test: {len(prompts)} items, {emu.jobs_created} jobs created", file=sys.stderr
    )


def test_dask_worker_without_credentials_fails_its_task_and_lives_on(emu, dask_cluster, tmp_path):
    client = dask_cluster
    creds = _creds(emu)
    # Wait for both workers (the nanny may be restarting one after the kill test).
    client.wait_for_workers(2, timeout=60)
    before = _worker_pids(client)
    client.run(lambda: [os.environ.pop(k, None) for k in list(creds)])
    try:
        future = client.submit(
            tasks.render,
            "no credentials",
            emu.url,
            str(tmp_path / "j.db"),
            str(tmp_path),
            pure=False,
        )
        with pytest.raises(uni1.ConfigurationError, match="no credentials"):
            future.result(timeout=60)
        assert _worker_pids(client) == before  # the same two processes
        assert emu.jobs_created == 0
    finally:
        client.run(lambda: os.environ.update(creds))
    future = client.submit(
        tasks.render, "credentials back", emu.url, str(tmp_path / "j.db"), str(tmp_path), pure=False
    )
    assert future.result(timeout=60)["job"].id in emu.jobs
    assert _worker_pids(client) == before


# -- Ray ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session(uni1_emulator_session):
    ray = pytest.importorskip("ray")
    saved = dict(os.environ)
    # Ray's workers inherit the driver's environment: the credentials and the
    # path to the package and to the task module.
    os.environ.update(_creds(uni1_emulator_session))
    os.environ["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT, HERE])
    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",  # loopback only
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)


def test_ray_worker_killed_mid_batch_pays_for_nothing_twice(emu, ray_session, tmp_path):
    ray = ray_session
    emu.job_duration = 0.4
    render = ray.remote(max_retries=3)(tasks.render)
    journal = str(tmp_path / "journal.db")
    prompts = [f"ray item {i}" for i in range(30)]
    out = str(tmp_path / "out")
    marks = str(tmp_path / "marks")
    refs = [render.remote(p, emu.url, journal, out, marks) for p in prompts]
    pending = list(refs)
    finished: set = set()
    killed = None
    deadline = time.monotonic() + 120
    while pending and killed is None and time.monotonic() < deadline:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.05)
        finished.update(r["job"].id for r in ray.get(ready))
        if len(finished) < 8 or not os.path.isdir(marks):
            continue
        for name in os.listdir(marks):
            pid, _, job_id = name.partition("-")
            if job_id not in finished:
                # That worker paid for its job and is waiting for it: killed
                # mid-item, the retry must re-attach, not pay again.
                killed = int(pid)
                os.kill(killed, signal.SIGKILL)
                break
    assert killed is not None
    results = ray.get(refs, timeout=120)
    check_batch(emu, results, prompts)
    print(
        f"\nray kill test: {len(prompts)} items, {emu.jobs_created} jobs created", file=sys.stderr
    )


def test_the_dask_example_runs_offline(tmp_path):
    import json
    import subprocess

    out = tmp_path / "renders"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env["PYTHONPATH"] = PACKAGE_PARENT
    script = os.path.join(os.path.dirname(HERE), "examples", "dask_pipeline.py")
    done = subprocess.run(
        [sys.executable, script, "--offline", "--prompts", "12", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Dask: 12 items, 12 files," in done.stdout
    with open(out / "manifest.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert [r["line"] for r in records] == list(range(1, 13))
    assert len({r["job_id"] for r in records}) == 12
    for r in records:
        assert r["status"] == "success"
        (file,) = r["files"]
        assert tasks.sha256_of(file["path"]) == file["sha256"]
