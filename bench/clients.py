"""The two clients behind one small interface, as a user of each would write them.

scenario_uni1 is used through its public API only. scenario-sdk (PyPI) has no
helper to wait for a job or to fetch an asset's bytes, so the loops its docs
suggest are written here: a fixed 3 s poll of GET /jobs/{id} (what its JS
helper does), GET /assets/{id} for the signed URL, and an `httpx.Client` (one,
shared, so connections are reused) for the CDN. A file download by the SDK is
written as this project writes one: temporary file, fsync, rename.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time

MODEL_ID = "model_luma-uni-1-max"
SDK_POLL_SECONDS = 3.0
TERMINAL = ("success", "failure", "canceled")


class Ours:
    name = "scenario_uni1"

    def __init__(self):
        import scenario_uni1 as uni1

        self.client = uni1.Client()  # base URL and credentials from the environment

    def submit(self, prompt):
        return self.client.generate(prompt)

    @staticmethod
    def job_id(job):
        return job.id

    @staticmethod
    def wait(job):
        job.wait()
        return job

    @staticmethod
    def fetch(job):
        return [im.data for im in job.images()]

    @staticmethod
    def download(job, dest):
        return job.download(dest, overwrite=True)

    # ---- the engine: generations, no thread per job
    def start(self, prompt, download=None):
        """A Generation running on the client's engine: `submit` once the public API has it."""
        submit = getattr(self.client, "submit", None)
        if submit is not None:
            return submit(prompt, download=download)
        return self.client._start(prompt, download=download)

    def window(self, prompts, concurrency, download=None):
        """Yields each finished Generation, at most `concurrency` in flight, from this thread
        alone: `generate_many` once the public API has it, else submit + wait_first."""
        many = getattr(self.client, "generate_many", None)
        if many is not None:
            yield from many(prompts, concurrency=concurrency, download=download)
            return
        from scenario_uni1 import _core

        todo = iter(prompts)
        live = [self.start(p, download) for p in itertools.islice(todo, concurrency)]
        while live:
            _core.wait_first(live)
            still = []
            for g in live:
                if not g.done:
                    still.append(g)
                    continue
                yield g
                nxt = next(todo, None)
                if nxt is not None:
                    still.append(self.start(nxt, download))
            live = still

    def completed(self, items):
        """Each item as it finishes: `as_completed` once the public API has it, else wait_first."""
        done_in_order = getattr(self.client, "as_completed", None)
        if done_in_order is not None:
            yield from done_in_order(items)
            return
        from scenario_uni1 import _core

        live = list(items)
        while live:
            _core.wait_first(live)
            yield from (g for g in live if g.done)
            live = [g for g in live if not g.done]

    def api(self):
        """Which API the engine figures went through (for the notes)."""
        if hasattr(self.client, "generate_many"):
            return "submit / generate_many / await gen (public API)"
        return (
            "Client._start + _core.wait_first + loop.add_reader(Client._engine_fd()) (private API)"
        )

    async def agenerate(self, prompt):
        """One generation awaited on the running asyncio loop without blocking it."""
        gen = self.start(prompt)
        if hasattr(gen, "__await__"):
            return await gen
        return await _engine_future(self.client, gen)


_ENGINE_WAITERS: dict = {}


def _engine_future(client, gen):
    """A future resolved from the client's engine fd once gen is done (one reader per client;
    one asyncio loop per process, as in the bench workers). The fd is readable once some
    generation ended since the last drain, so one that ends after the `done` check below is
    still seen by the reader."""
    import asyncio

    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    if gen.done:
        fut.set_result(gen.result())
        return fut
    waiters = _ENGINE_WAITERS.get(id(client))
    if waiters is None:
        waiters = _ENGINE_WAITERS[id(client)] = {}

        def ready():
            client._engine_drain()
            for g, f in list(waiters.items()):
                if g.done:
                    del waiters[g]
                    if g.error is not None:
                        f.set_exception(g.error)
                    else:
                        f.set_result(g.result())

        loop.add_reader(client._engine_fd(), ready)
    waiters[gen] = fut
    return fut


class Sdk:
    name = "scenario-sdk"

    def __init__(self, poll_seconds=SDK_POLL_SECONDS):
        import httpx
        from scenario_sdk import Scenario

        self.client = Scenario()  # base URL (with /v1) and credentials from the environment
        self.http = httpx.Client(timeout=60.0)
        self.poll = poll_seconds

    def submit(self, prompt):
        return self.client.generate.run_model(MODEL_ID, body={"prompt": prompt}).job

    @staticmethod
    def job_id(job):
        return job.job_id

    def wait(self, job):
        # GET at once, then every 3 s: on a job of T seconds, 1 + ceil(T / 3) GETs
        while True:
            job = self.client.jobs.retrieve(job.job_id).job
            if job.status in TERMINAL:
                if job.status != "success":
                    raise RuntimeError(f"job {job.job_id} ended {job.status}")
                return job
            time.sleep(self.poll)

    def _urls(self, job):
        if job.status != "success":
            job = self.wait(job)
        for aid in job.metadata.asset_ids:
            yield aid, self.client.assets.retrieve(aid).asset.url

    def fetch(self, job):
        out = []
        for _aid, url in self._urls(job):
            r = self.http.get(url)
            r.raise_for_status()
            out.append(r.content)
        return out

    def download(self, job, dest):
        paths = []
        for aid, url in self._urls(job):
            final = os.path.join(dest, aid + ".png")
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as f, self.http.stream("GET", url) as r:
                    r.raise_for_status()
                    for chunk in r.iter_bytes(1 << 16):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                os.unlink(tmp)
                raise
            paths.append(final)
        return paths


def make(name, **kw):
    return Ours() if name == "ours" else Sdk(**kw)


class SdkAsync:
    """scenario-sdk's AsyncScenario, with the same 3 s poll loop on asyncio.sleep and one
    shared `httpx.AsyncClient` for the CDN: what an asyncio user of the SDK writes."""

    name = "scenario-sdk (async)"

    def __init__(self, poll_seconds=SDK_POLL_SECONDS):
        import httpx
        from scenario_sdk import AsyncScenario

        self.client = AsyncScenario()
        self.http = httpx.AsyncClient(timeout=60.0)
        self.poll = poll_seconds

    async def agenerate(self, prompt):
        import asyncio

        job = (await self.client.generate.run_model(MODEL_ID, body={"prompt": prompt})).job
        while True:
            job = (await self.client.jobs.retrieve(job.job_id)).job
            if job.status in TERMINAL:
                break
            await asyncio.sleep(self.poll)
        if job.status != "success":
            raise RuntimeError(f"job {job.job_id} ended {job.status}")
        out = []
        for aid in job.metadata.asset_ids:
            url = (await self.client.assets.retrieve(aid)).asset.url
            r = await self.http.get(url)
            r.raise_for_status()
            out.append(r.content)
        return out
