"""A client shared across fork(): the child gets its own connections, never the parent's.

Before the fix, parent and children read each other's answers off the pooled
keep-alive sockets: job(A) came back as job B, and other calls stalled until the
timeout. Each worker here asks for A and B in turn, many times, while the others do
the same, and records every answer whose id is not the one asked for, every error,
and the slowest call.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import threading
import time

import pytest
from conftest import connection_inodes, connections_to

import scenario_uni1 as uni1

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")

CALLS = 300  # per worker
CALL_TIMEOUT = 5.0  # a call stuck on a stolen answer waits this long, then fails
WORKERS = 3
SLOW = 3.0  # no call should come near CALL_TIMEOUT; a healthy one takes milliseconds


def _hammer(ids, client=None, calls=CALLS):
    """Asks for ids[0], ids[1], ... in turn; returns what went wrong."""
    client = client or uni1.default_client()
    wrong = errors = 0
    first_problem = None
    slowest = 0.0
    for i in range(calls):
        want = ids[i % len(ids)]
        t0 = time.monotonic()
        try:
            got = client.job(want, timeout=CALL_TIMEOUT).id
        except Exception as e:  # counted: a stall ends as TimeoutError
            errors += 1
            first_problem = first_problem or f"{type(e).__name__}: {e}"
        else:
            if got != want:
                wrong += 1
                first_problem = first_problem or f"asked {want}, got {got}"
        slowest = max(slowest, time.monotonic() - t0)
    return {"wrong": wrong, "errors": errors, "slowest": slowest, "first": first_problem}


def _two_jobs(client):
    a = client.generate("A castle on a hill")
    b = client.generate("A forest at dawn")
    a.wait(timeout=30)
    b.wait(timeout=30)
    return [a.id, b.id]


def _fork_worker(fn):
    """Runs fn() in a forked child; returns (pid, read end of a pipe with its JSON result)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.write(w, json.dumps(fn()).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(workers, limit=120.0):
    """Every child's result, killing any that has not finished within `limit` seconds."""
    results = []
    end = time.monotonic() + limit
    for pid, r in workers:
        data = b""
        while True:
            left = end - time.monotonic()
            ready, _, _ = select.select([r], [], [], max(left, 0))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _, status = os.waitpid(pid, 0)
        results.append(json.loads(data) if data else {"dead": status})
    return results


def _assert_clean(results):
    for res in results:
        assert "dead" not in res, f"a worker died or hung: {res}"
        assert res["wrong"] == 0, f"answers for another job: {res}"
        assert res["errors"] == 0, f"failed calls: {res}"
        assert res["slowest"] < SLOW, f"a call stalled: {res}"


def test_forked_children_and_parent_share_a_used_client(emu):
    emu.job_duration = 0.05
    with emu.client(timeout=10.0) as client:
        ids = _two_jobs(client)
        _hammer(ids, client, calls=10)  # keep-alive connections now sit in the pool
        workers = [_fork_worker(lambda: _hammer(ids, client)) for _ in range(WORKERS)]
        parent = {}
        t = threading.Thread(target=lambda: parent.update(_hammer(ids, client)))
        t.start()
        results = _collect(workers)
        t.join(120)
        assert not t.is_alive()
        _assert_clean(results + [parent])
        # The parent's own connections still work after the children went away.
        assert _hammer(ids, client, calls=20)["wrong"] == 0


def test_multiprocessing_fork_pool_after_default_client_was_used(emu_env):
    emu_env.job_duration = 0.05
    ids = _two_jobs(uni1.default_client())
    _hammer(ids, calls=10)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WORKERS) as pool:
        pending = pool.starmap_async(_hammer, [(ids,)] * WORKERS)
        parent = _hammer(ids)
        results = pending.get(timeout=120)
    _assert_clean(results + [parent])


def _child_generates_and_downloads(dest):
    job = uni1.generate("A lighthouse in a storm")
    job.wait(timeout=30)
    paths = job.download(dest)
    images = job.images()
    return {
        "job": job.id,
        "files": [os.path.getsize(p) for p in paths],
        "images": [len(i.data) for i in images],
    }


def test_child_submits_and_downloads_normally(emu_env, tmp_path):
    emu_env.job_duration = 0.05
    ids = _two_jobs(uni1.default_client())  # the parent's pool has connections now
    created = emu_env.jobs_created
    pid, r = _fork_worker(lambda: _child_generates_and_downloads(str(tmp_path)))
    parent = _hammer(ids, calls=200)  # the parent keeps its connections busy meanwhile
    (res,) = _collect([(pid, r)])
    _assert_clean([parent])
    assert "dead" not in res, res
    assert res["job"] not in ids
    assert emu_env.jobs_created == created + 1
    assert len(res["files"]) == 1 and res["files"][0] > 0
    assert res["images"] == res["files"]
    on_disk = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert [p.stat().st_size for p in on_disk] == res["files"]
    # The parent goes on as before.
    assert uni1.default_client().job(ids[0]).id == ids[0]


def test_fork_while_another_thread_holds_the_client_busy(emu):
    """Forks while other threads keep acquiring and releasing sessions: the child
    never inherits a held lock (it would hang on its first call)."""
    emu.job_duration = 0.05
    with emu.client(timeout=10.0) as client:
        ids = _two_jobs(client)
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                client.job(ids[0], timeout=CALL_TIMEOUT)

        threads = [threading.Thread(target=busy) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            workers = [_fork_worker(lambda: _hammer(ids, client, calls=20)) for _ in range(20)]
            results = _collect(workers, limit=60.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        _assert_clean(results)


def test_child_holds_none_of_the_parents_connections(emu):
    """Right after the fork the child has no socket of the parent's connections (they
    were replaced by /dev/null and are closed at its first call); the parent's stay
    open and usable."""
    emu.job_duration = 0.05
    with emu.client(timeout=10.0) as client:
        ids = _two_jobs(client)
        _hammer(ids, client, calls=4)
        held = connections_to(emu)
        assert held >= 1  # the parent keeps its keep-alive connection(s)

        def child():
            at_fork = connections_to(emu)
            _hammer(ids, client, calls=20)
            return {"at_fork": at_fork, "after": connections_to(emu)}

        (res,) = _collect([_fork_worker(child)])
        assert res["at_fork"] == 0, res
        assert 1 <= res["after"] <= 2, res  # its own, made after the fork
        assert connections_to(emu) == held
        assert _hammer(ids, client, calls=20)["wrong"] == 0


@pytest.fixture(scope="module")
def tls_emu():
    trustme = pytest.importorskip("trustme")
    import ssl
    import tempfile

    from scenario_uni1.emulator import Emulator

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    with tempfile.TemporaryDirectory() as d:
        pem = os.path.join(d, "ca.pem")
        ca.cert_pem.write_to_path(pem)
        with Emulator(ssl_context=ctx, cdn_ssl_context=ctx, job_duration=0.05) as emu:
            emu.ca_pem = pem
            yield emu


def test_child_leaves_the_parents_tls_connections_alone(tls_emu):
    """The child cleans up the sessions it inherited without a byte reaching the
    parent's TLS connections (no close_notify): the parent goes on with the very
    same connections afterwards, none is replaced."""
    tls_emu.reset()
    tls_emu.job_duration = 0.05
    with tls_emu.client(timeout=10.0, ca_bundle=tls_emu.ca_pem) as client:
        ids = _two_jobs(client)
        _hammer(ids, client, calls=4)
        before = connection_inodes(tls_emu)
        assert before

        def child():
            res = _hammer(ids, client, calls=30)  # its first call cleans up the inherited
            client.close()
            return res

        results = _collect([_fork_worker(child) for _ in range(2)])
        _assert_clean(results)
        time.sleep(0.2)  # a close_notify would have reached the server by now
        _assert_clean([_hammer(ids, client, calls=30)])
        assert connection_inodes(tls_emu) == before
