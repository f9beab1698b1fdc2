"""asyncio: `await gen`, `async for` over as_completed and generate_many.

The event loop never blocks (its lag is measured by a ticker coroutine while
200 generations run) and no thread is taken per call: the engine's done
callbacks wake the loop through its own wakeup socket.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import types

import pytest
from _emulator_process import emulator_process
from conftest import png_bytes

import scenario_uni1 as uni1


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_await_a_generation(client, emu, tmp_path):
    async def main():
        images = await client.submit("awaited")
        paths = await client.submit("awaited to disk", download=tmp_path)
        return images, paths

    images, paths = asyncio.run(main())
    assert [type(i) for i in images] == [uni1.Image]
    assert paths[0].parent == tmp_path and paths[0].exists()


def test_await_raises_the_generations_error(client, emu):
    emu.next_job_outcome("failure", error="nope")

    async def main():
        await client.submit("fails")

    with pytest.raises(uni1.JobFailedError, match="nope"):
        asyncio.run(main())


def test_async_for_over_as_completed_and_generate_many(client, emu):
    async def main():
        job = client.generate("a job")
        gens = [client.submit(f"gen {i}") for i in range(4)]
        seen = [item async for item in client.as_completed([job, *gens], timeout=60)]
        many = [
            g async for g in client.generate_many([f"many {i}" for i in range(6)], concurrency=3)
        ]
        return job, gens, seen, many

    job, gens, seen, many = asyncio.run(main())
    assert len(seen) == 5 and {id(g) for g in gens} <= {id(x) for x in seen}
    (job_seen,) = [x for x in seen if isinstance(x, uni1.Job)]
    assert job_seen.id == job.id and job_seen.status == "success"
    assert all(g.error is None for g in gens)
    assert sorted(g.prompt for g in many) == [f"many {i}" for i in range(6)]
    assert all(g.error is None and len(g.result(0)) == 1 for g in many)
    assert emu.jobs_created == 11


def test_async_as_completed_deadline(client, emu):
    emu.next_job_outcome("stuck")
    stuck = client.generate("stuck")

    async def main():
        t0 = time.monotonic()
        with pytest.raises(uni1.TimeoutError):
            async for _ in client.as_completed([stuck], timeout=0.3):
                pass
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.5


def test_a_cancelled_await_leaves_the_generation_running(client, emu):
    emu.job_duration = 0.8

    async def main():
        gen = client.submit("outlives the wait")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.ensure_future(_await(gen)), 0.1)
        assert not gen.done
        return await gen

    assert len(asyncio.run(main())) == 1
    assert emu.jobs_created == 1


async def _await(gen):
    return await gen


def test_gather_many_awaits_without_a_thread_per_call(client, emu):
    async def main():
        before = threading.active_count(), os_threads()
        gens = [client.submit(f"gathered {i}") for i in range(40)]
        results = await asyncio.gather(*gens)
        during = threading.active_count(), os_threads()
        return before, during, results

    client.submit("warm up").result(timeout=30)  # the engine thread exists
    before, during, results = asyncio.run(main())
    assert during == before
    assert len(results) == 40 and all(len(r) == 1 for r in results)


def test_loop_lag_while_200_generations_run():
    """The event loop's lag stays low (p99 <= 20 ms) while 200 generations run.

    A ticker coroutine asks to wake every 5 ms and records how late it woke.
    The emulator runs in its own process, so the lag measured is the
    client's. The lag also counts every moment the machine gave this process
    no CPU, so (as the Ctrl-C latency tests do) the measurement runs up to
    three times and the best run is asserted: a busy machine can spoil one
    run, a client that blocks the loop spoils all three.
    """

    async def main(client):
        lags: list[float] = []
        stop = asyncio.Event()

        async def ticker():
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                t0 = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - t0 - 0.005)

        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        threads = os_threads()
        gens = []
        for i in range(200):
            gens.append(client.submit(f"lag {i}", aspect_ratio="1:1"))
            if i % 20 == 19:
                await asyncio.sleep(0)  # submitting in bursts, as a real program would
        most = threads
        done = 0
        async for gen in client.as_completed(gens, timeout=120):
            assert gen.error is None, gen.error
            done += 1
            most = max(most, os_threads())
        stop.set()
        await tick
        return sorted(lags), done, threads, most

    runs = []
    with emulator_process("--job-duration", "1.0") as emu, emu.client(timeout=30) as client:
        client.submit("warm up").result(timeout=30)
        for _ in range(3):
            lags, done, threads, most = asyncio.run(main(client))
            assert done == 200
            assert len(lags) > 100
            assert most == threads  # no thread per generation, nor per await
            p99 = lags[int(len(lags) * 0.99)]
            runs.append(p99)
            print(
                f"loop lag while 200 generations ran: p50 {lags[len(lags) // 2] * 1e3:.2f} ms, "
                f"p99 {p99 * 1e3:.2f} ms, max {lags[-1] * 1e3:.2f} ms over {len(lags)} "
                f"ticks; threads {threads} -> at most {most}"
            )
            if p99 <= 0.020:
                break
    assert min(runs) <= 0.020, runs


def test_live_notebook_display(client, emu, monkeypatch):
    """In a Jupyter kernel the output is redrawn from the kernel's loop until the end."""
    shown = []

    class Handle:
        def update(self, bundle, raw=False):
            shown.append(("update", bundle))

    def display(bundle, raw=False, display_id=None):
        shown.append(("display", bundle))
        return Handle() if display_id else None

    ipython = types.ModuleType("IPython")
    ipython.display = types.SimpleNamespace(display=display)
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython.display)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    emu.job_duration = 1.2

    async def cell():
        gen = client.submit("in a notebook")
        gen._ipython_display_()  # what IPython calls for the cell's value
        await gen
        await asyncio.sleep(0.05)  # the final redraw is scheduled on the loop
        return gen

    gen = asyncio.run(cell())
    kinds = [kind for kind, _ in shown]
    assert kinds[0] == "display" and kinds.count("update") >= 2
    first, last = shown[0][1]["text/html"], shown[-1][1]["text/html"]
    assert "<progress" in first and "<img" not in first
    assert "<img" in last and gen.job.id in last
    assert shown[-1][1]["text/plain"] == repr(gen)


def test_aupload_and_aestimate(client, emu):
    data = png_bytes()

    async def main():
        asset_id = await client.aupload(data)
        same = await client.aupload(asset_id)  # an asset id: no request
        cost = await client.aestimate("priced", image_refs=[asset_id])
        module_cost = await uni1.aestimate("priced", image_refs=[asset_id], client=client)
        with pytest.raises(uni1.InvalidRequestError):
            await client.aupload(b"not an image")
        return asset_id, same, cost, module_cost

    asset_id, same, cost, module_cost = asyncio.run(main())
    assert asset_id.startswith("asset_") and same == asset_id
    assert cost == module_cost == client.estimate("priced", image_refs=[asset_id])
    assert emu.request_count("POST", r"^/v1/assets$") == 1
    assert emu.jobs_created == 0


def test_many_auploads_at_once_keep_the_loop_free_on_the_engine(client, emu):
    emu.inject("POST", r"^/v1/assets$", delay=0.5, times=None)  # a slow upload
    images = [png_bytes(8 + i, 8) for i in range(12)]

    async def main():
        lags = []
        stop = asyncio.Event()

        async def ticker():
            loop = asyncio.get_running_loop()
            while not stop.is_set():
                t0 = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - t0 - 0.005)

        tick = asyncio.ensure_future(ticker())
        client.estimate("warm up the engine")  # its thread exists from here on
        before = len(os.listdir("/proc/self/task"))
        t0 = time.monotonic()
        pending = [asyncio.ensure_future(client.aupload(data)) for data in images]
        await asyncio.sleep(0.2)
        during = len(os.listdir("/proc/self/task"))  # every upload in flight
        ids = await asyncio.gather(*pending)
        elapsed = time.monotonic() - t0
        stop.set()
        await tick
        return ids, elapsed, before, during, sorted(lags)

    ids, elapsed, before, during, lags = asyncio.run(main())
    print(
        f"12 aupload at once: {elapsed:.2f} s, threads {before} -> {during}, "
        f"loop lag max {lags[-1] * 1e3:.1f} ms"
    )
    assert len(set(ids)) == 12
    assert during == before  # uploads are engine tasks: not a thread per call, nor a pool
    assert elapsed < 12 * 0.5  # and yet several at a time
    assert lags[-1] < 0.25  # the loop went on ticking through 0.5 s uploads
