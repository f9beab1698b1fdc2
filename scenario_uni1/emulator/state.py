"""The emulator's records (jobs, assets, uploads, requests), ids and clock.

A job does not run anywhere: its status, progress and history are computed from
the clock each time it is read (`_state`), so ten thousand waiting jobs cost nothing.
Everything here is read and written under `State._lock`.
"""

from __future__ import annotations

import collections
import json
import random
import string
import threading
import time

from . import images as _img
from .wire import MODEL_ID, TERMINAL, _iso

_ALNUM = string.ascii_letters + string.digits


class RecordedRequest:
    """One request as the emulator received it."""

    __slots__ = ("body", "fault", "headers", "method", "origin", "path", "query", "time")

    def __init__(self, origin, method, path, query, headers, body, t, fault):
        self.origin = origin  # "api", "cdn" or "cdn2" (the redirect target)
        self.method = method
        self.path = path
        self.query = query  # dict of the query string (last value wins)
        self.headers = headers  # dict, lower-case names
        self.body = body  # bytes (empty for drop_before: never read)
        self.time = t  # time.time() when the request was complete
        self.fault = fault  # the fault action applied, "respond", or None

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "<RecordedRequest {} {} {}{}>".format(
            self.origin,
            self.method,
            self.path,
            f" fault={self.fault}" if self.fault else "",
        )


class _Job:
    __slots__ = (
        "asset_ids",
        "cost",
        "created",
        "duration",
        "encoded",
        "error",
        "final",
        "fmt",
        "height",
        "hint",
        "id",
        "input",
        "outcome",
        "outputs",
        "project_id",
        "schedule",
        "seed",
        "seq",
        "ticks",
        "width",
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        self.asset_ids = None
        self.final = None  # the JSON dict, kept once terminal
        self.encoded = None  # (state key, encoded GET answer)


class _Asset:
    __slots__ = (
        "_size",
        "conversions",
        "created",
        "data",
        "fmt",
        "height",
        "id",
        "job_id",
        "name",
        "pad_to",
        "project_id",
        "seed",
        "source",
        "width",
    )

    def __init__(self, **kw):
        self.data = None
        self.seed = 0
        self.pad_to = None
        self.job_id = None
        self.conversions = {}
        self._size = None
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def mime(self):
        return _img.MIME_BY_FORMAT.get(self.fmt, "application/octet-stream")

    @property
    def ext(self):
        return _img.EXT_BY_FORMAT.get(self.fmt, self.fmt)

    def body(self):
        if self.data is not None:
            return _img.Body([self.data])
        return _img.generated_image(self.width, self.height, self.fmt, self.seed, self.pad_to)

    @property
    def size(self):
        if self._size is None:
            self._size = len(self.body())
        return self._size


class _Upload:
    __slots__ = (
        "asset_id",
        "completed",
        "content_type",
        "created",
        "duration",
        "error",
        "file_name",
        "file_size",
        "id",
        "kind",
        "part_data",
        "part_urls",
        "parts",
        "project_id",
        "result",
    )

    def __init__(self, **kw):
        self.completed = None
        self.part_data = {}
        self.error = None
        self.asset_id = None
        self.result = None
        for k, v in kw.items():
            setattr(self, k, v)


def _schedule(outcome, d):
    steps = [(0.0, "queued"), (0.1 * d, "warming-up"), (0.2 * d, "in-progress")]
    if outcome == "success":
        steps += [(0.85 * d, "finalizing"), (d, "success")]
    elif outcome == "failure":
        steps.append((0.6 * d, "failure"))
    elif outcome == "canceled":
        steps.append((0.5 * d, "canceled"))
    return steps


def _ticks(seed, d, n=12):
    """Seeded, uneven progress steps [(offset, value)] inside in-progress (20%..84%)."""
    rng = random.Random(seed ^ 0x5EED)
    gaps = [rng.random() + 0.15 for _ in range(n)]
    weights = [0.0 if rng.random() < 0.2 else rng.random() ** 2 + 0.02 for _ in range(n)]
    weights[-1] = max(weights[-1], 0.05)
    gsum, wsum = sum(gaps), sum(weights)
    span = 0.64 * d
    out = []
    off = 0.2 * d
    acc = 0.0
    for g, w in zip(gaps, weights):
        off += span * g / gsum
        acc += w
        out.append((off, round(0.97 * acc / wsum, 3)))
    return out


class State:
    """The records, ids and clock behind every route (the Emulator's base).

    Emulator.__init__ sets the knobs and creates these; every record below is read
    and written under `_lock` (the request path holds it for a whole request)."""

    _lock: threading.RLock

    def _clear_state(self):
        with self._lock:
            self._jobs = {}
            self._job_list = []
            self._assets = {}
            self._uploads = {}
            self._faults = []
            self._outcomes = collections.deque()
            self._requests = collections.deque(maxlen=self._max_recorded)
            self._counts = collections.Counter()
            self._jobs_created = 0
            self._cdn_auth_seen = 0
            self._offset = 0.0
            self._inflight = []
            self._chaos = None

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (jobs progress, URLs expire)."""
        with self._lock:
            self._offset += seconds

    def now(self) -> float:
        return time.time() + self._offset

    def _new_id(self, prefix):
        rng = self._rng
        return prefix + "".join(rng.choice(_ALNUM) for _ in range(24))

    def _next_job_seed(self):
        # Consecutive seeds from a random start: jobs in a row never share one
        # of the _img.SEED_VARIANTS image patterns (tests compare them), and a
        # seeded emulator still repeats itself exactly.
        seed = self._seed_cursor
        self._seed_cursor = (seed + max(int(self.outputs_per_job), 1)) & 0xFFFFFFFF
        return seed

    def _record(self, req):
        path = req.path
        if path.startswith("/_emulator/"):
            return
        self._counts[req.origin] += 1
        if req.origin != "api" and "authorization" in req.headers:
            self._cdn_auth_seen += 1
        if self.record_requests:
            fault = req.fault
            label = None
            if fault is not None:
                label = fault.action or ("respond" if fault.status is not None else "delay")
            self._requests.append(
                RecordedRequest(
                    req.origin,
                    req.method,
                    path,
                    req.query if req.query_string else {},
                    req.headers,
                    req.body,
                    req.time,
                    label,
                )
            )

    # ------------------------------------------------------------------ jobs
    def _state(self, job, now):
        """(status, progress, index of the last reached schedule entry, updated offset)."""
        t = now - job.created
        sched = job.schedule
        i = 0
        for k in range(1, len(sched)):
            if sched[k][0] <= t:
                i = k
            else:
                break
        status = sched[i][1]
        updated = sched[i][0]
        if status in ("queued", "warming-up"):
            progress = 0.0
        elif status == "finalizing":
            progress = 0.99
        elif status == "success":
            progress = 1.0
        else:  # in-progress, failure, canceled: the last progress step before t
            horizon = t if status == "in-progress" else sched[i][0]
            progress = 0.0
            for off, value in job.ticks:
                if off <= horizon:
                    progress = value
                    if status == "in-progress":
                        updated = max(updated, off)
                else:
                    break
        return status, progress, i, updated

    def _job_json(self, job, now, initial=False, state=None):
        if job.final is not None:
            return job.final
        if initial:
            status, progress, i, updated = "queued", 0.0, 0, 0.0
        else:
            status, progress, i, updated = state or self._state(job, now)
        terminal = status in TERMINAL
        if status == "success" and job.asset_ids is None:
            self._materialize(job)
        created = job.created
        history = [{"date": _iso(created + off), "status": st} for off, st in job.schedule[: i + 1]]
        asset_ids = list(job.asset_ids) if status == "success" else []
        output = None
        if status == "success":
            output = {
                "assetIds": asset_ids,
                "outputFormat": job.fmt,
                "width": job.width,
                "height": job.height,
            }
        data = {
            "jobId": job.id,
            "jobType": "custom",
            "status": status,
            "progress": progress,
            "statusHistory": history,
            "metadata": {
                "assetIds": asset_ids,
                "error": job.error if status in ("failure", "canceled") else None,
                "hint": job.hint if status == "failure" else None,
                "input": job.input,
                "output": output,
            },
            "billing": {"cuCost": job.cost, "cuDiscount": 0, "disableRefund": False},
            "authorId": "user_emulator",
            "ownerId": job.project_id or "proj_emulator",
            "createdAt": _iso(created),
            "updatedAt": _iso(created + updated),
            "modelId": MODEL_ID,
        }
        if terminal and not initial:
            job.final = data
        return data

    def _materialize(self, job):
        """Create the job's output assets, the first time it is seen successful."""
        ids = []
        done = job.created + job.duration
        for k in range(job.outputs):
            asset = _Asset(
                id=self._new_id("asset_"),
                fmt=job.fmt,
                width=job.width,
                height=job.height,
                seed=job.seed + k,
                name=f"{job.id}-{k}.{_img.EXT_BY_FORMAT.get(job.fmt, job.fmt)}",
                created=done,
                job_id=job.id,
                source="generated",
                project_id=job.project_id,
                pad_to=self.asset_size_bytes,
            )
            self._assets[asset.id] = asset
            ids.append(asset.id)
        job.asset_ids = ids

    def _new_asset(self, info, data, name, source, project_id):
        fmt, w, h = info
        asset = _Asset(
            id=self._new_id("asset_"),
            fmt=fmt,
            width=w,
            height=h,
            data=data,
            name=name or f"upload.{_img.EXT_BY_FORMAT.get(fmt, fmt)}",
            created=self.now(),
            source=source,
            project_id=project_id,
        )
        self._assets[asset.id] = asset
        return asset
