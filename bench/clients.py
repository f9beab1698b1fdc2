"""The two clients behind one small interface, as a user of each would write them.

scenario_uni1 is used through its public API only. scenario-sdk (PyPI) has no
helper to wait for a job or to fetch an asset's bytes, so the loops its docs
suggest are written here: a fixed 3 s poll of GET /jobs/{id} (what its JS
helper does), GET /assets/{id} for the signed URL, and an `httpx.Client` (one,
shared, so connections are reused) for the CDN. A file download by the SDK is
written as this project writes one: temporary file, fsync, rename.
"""

from __future__ import annotations

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

    # ---- the engine: generations, no thread per job (the public API of python-api.md)
    def start(self, prompt, download=None):
        return self.client.submit(prompt, download=download)

    def window(self, prompts, concurrency, download=None):
        """Each finished Generation, at most `concurrency` in flight, from this thread alone."""
        return self.client.generate_many(prompts, concurrency=concurrency, download=download)

    def completed(self, items):
        return self.client.as_completed(items)

    @staticmethod
    def api():
        """Which API the engine figures went through (for the notes)."""
        return "the public API (`submit`, `generate_many`, `as_completed`, `await gen`)"

    async def agenerate(self, prompt):
        """One generation awaited on the running asyncio loop without blocking it."""
        return await self.client.submit(prompt)


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
