"""Many at once: as_completed, wait and generate_many, on the engine.

Each watched pipeline reports its end through a done callback that runs on
the engine thread and only appends a key to a deque (thread-safe, O(1)), so
completions are seen in the order the engine saw them. A blocking consumer
sleeps on a lock the callback releases (a bell: the GIL released, and Ctrl-C
interrupts the sleep at once), so each completion costs O(1) whatever the
number watched; an asyncio consumer awaits a future the callback resolves
through the loop's wakeup socket (_aio.Wakeup). Neither takes a thread: a
thousand jobs are watched by the engine thread alone.

The same object is an iterator and an async iterator; one consumer at a time.
"""

import _thread
import collections
import time

from . import _core
from ._generation import SUBMIT_ARGS, Generation, start
from ._job import Job

TYPE_CHECKING = False  # type checkers take the branch; nothing imports typing at run time
if TYPE_CHECKING:
    import os
    from collections.abc import Iterable

    from ._aio import Wakeup
    from ._client import Client

_NOTHING = object()


class BudgetExceededError(_core.Uni1Error):
    """A generate_many item not submitted: its estimate would have taken the
    spend past max_cost. Nothing was sent for it (the item is yielded with this
    as its error; it never raises)."""


def _left(deadline: "_core.Deadline") -> "float | None":
    """Seconds left (None: no deadline); TimeoutError once it passed."""
    try:
        return deadline.remaining()
    except _core.TimeoutError:
        raise _core.TimeoutError("the deadline passed before every item finished") from None


class _Feed:
    """Engine done callbacks -> a deque of keys, plus whoever waits for them."""

    # A consumer that heard nothing for this long looks at its generations
    # itself: a generation whose callback can never run (started before a
    # fork, so done in the child with no engine to call it) is still seen.
    _RESCAN = 1.0

    def __init__(self) -> None:
        self.finished: collections.deque = collections.deque()
        self._wakeup: Wakeup | None = None  # set once iterated with async for
        # Held while there is no news; a callback releases it. A release
        # before the consumer sleeps leaves it free, so no wake-up is lost.
        self._bell = _thread.allocate_lock()
        self._bell.acquire()

    def watch(self, key, gen) -> None:
        gen.add_done_callback(lambda _gen: self._on_done(key))

    def _on_done(self, key) -> None:
        # The engine thread: nothing here may block or raise.
        self.finished.append(key)
        try:
            self._bell.release()
        except RuntimeError:
            pass  # already rung, not yet heard
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.notify()

    def wait(self, end) -> None:
        """Block until a watched generation ends; TimeoutError at end."""
        while not self.finished:
            left = _left(end)
            pause = self._RESCAN if left is None else min(left, self._RESCAN)
            # Interrupted by a signal (Ctrl-C) at once on the main thread.
            if not self._bell.acquire(timeout=max(pause, 0.0)) and not self.finished:
                self._scan()

    def _scan(self) -> None:
        for key, gen in self._pairs():
            if gen.done:
                self.finished.append(key)

    async def await_any(self, end, has_news) -> None:
        """The async wait: until a callback fires or end passes (TimeoutError)."""
        from ._aio import Wakeup

        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = Wakeup()
        wakeup.arm()
        if has_news():  # arrived between the caller's look and arm()
            wakeup._fut = None
            return
        await wakeup.wait(_left(end))

    def _pairs(self):
        raise NotImplementedError


def _watch_gen(item):
    """The _core.Generation to watch for an as_completed item, or None if it has ended."""
    if isinstance(item, Generation):
        return item._gen
    if isinstance(item, _core.Generation):
        return item
    if isinstance(item, Job):
        if item.done:
            return None
        # The engine polls the job on its schedule; nothing is fetched.
        return item.client._start(None, job=item, fetch=False)
    raise _core.InvalidRequestTypeError(
        f"as_completed and wait take Jobs and Generations, not {type(item).__name__}"
    )


class AsCompleted(_Feed):
    """Yields each item (Job or Generation) as it reaches a terminal state.

    A Generation is yielded itself; a Job as the engine last saw it (a Job
    object of its own, with the final status, for the same id). A failed
    item is yielded like any other (its error set); at the deadline
    TimeoutError is raised. Works with `for` and `async for`.
    """

    def __init__(self, items, timeout=None) -> None:
        super().__init__()
        self._end = _core.Deadline(timeout)
        self._items = list(items)
        for item in self._items:  # every type checked before any watch starts
            if not isinstance(item, (Generation, _core.Generation, Job)):
                _watch_gen(item)  # raises
        self._taken = [False] * len(self._items)
        # The generations not yet yielded, with swap-remove positions: the
        # list handed to wait_first shrinks as items finish.
        self._waiting: list = []
        self._keys: list = []
        self._pos: dict = {}
        self._watches: list = []  # the engine's polls of Job items (ours to stop)
        for i, item in enumerate(self._items):
            gen = _watch_gen(item)
            if isinstance(item, Job) and gen is not None:
                self._watches.append(gen)
            if gen is None:
                self.finished.append(i)
                continue
            self._pos[i] = len(self._waiting)
            self._waiting.append(gen)
            self._keys.append(i)
            self.watch(i, gen)

    def _pairs(self):
        return list(zip(self._keys, self._waiting))

    def _take(self):
        while self.finished:
            i = self.finished.popleft()
            if self._taken[i]:
                continue
            self._taken[i] = True
            item = self._items[i]
            pos = self._pos.pop(i, None)
            if pos is not None:
                gen = self._waiting[pos]
                last_gen, last_key = self._waiting.pop(), self._keys.pop()
                if pos < len(self._waiting):
                    self._waiting[pos], self._keys[pos] = last_gen, last_key
                    self._pos[last_key] = pos
                if isinstance(item, Job):
                    # The watch ends with the job as the engine last saw it
                    # (a Job of its own: the one given is not updated).
                    final = gen.job
                    if final is not None:
                        item = self._items[i] = Job._of(item.client, final)
            return item
        return _NOTHING

    def __iter__(self):
        return self

    def __next__(self):
        while True:
            item = self._take()
            if item is not _NOTHING:
                return item
            if not self._waiting:
                raise StopIteration
            self.wait(self._end)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while True:
            item = self._take()
            if item is not _NOTHING:
                return item
            if not self._waiting:
                raise StopAsyncIteration
            await self.await_any(self._end, lambda: bool(self.finished))
            if not self.finished:
                self._scan()

    def close(self) -> None:
        """Stops following the Jobs not yet yielded (the engine's polls of them).

        The jobs themselves go on; Generations given are left alone. Called
        when the object is dropped, so a loop left early polls nothing more.
        """
        watches = getattr(self, "_watches", [])  # __init__ may have refused its items
        self._watches = []
        for gen in watches:
            gen.cancel()  # a watch never cancels the job on the server

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<scenario_uni1.as_completed: {len(self._waiting)} of {len(self._items)} pending>"


def wait(items, timeout=None) -> list:
    """Every item (Jobs, Generations) once each has ended, in input order.

    Jobs come back with their final state (see AsCompleted). Failed items are
    returned like the others (their error set); the deadline raises
    TimeoutError.
    """
    watch = AsCompleted(items, timeout)
    try:
        for _ in watch:
            pass
    finally:
        watch.close()  # a deadline or Ctrl-C: stop following the Jobs
    return list(watch._items)


def _ceiling(error) -> "int | None":
    """The team's concurrency ceiling if error is its 429 (too many jobs in flight), else None.

    That answer creates and bills nothing: the request can be sent again once
    one of the jobs in flight has ended. The ceiling is the answer's
    details.actionLimit (0 when it gives no number).
    """
    if not isinstance(error, _core.RateLimitError):
        return None
    details = getattr(error, "details", None)
    if details is None:
        import json

        try:
            body = json.loads(error.body or "")
        except ValueError:
            return None
        details = body.get("details") if isinstance(body, dict) else None
    if not isinstance(details, dict) or "actionLimit" not in details:
        return None
    limit = details["actionLimit"]
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else 0


class GenerateMany(_Feed):
    """generate_many's iterator (also an async iterator): see Client.generate_many.

    At most `limit` submitted pipelines are in flight; limit starts at
    concurrency. When the server answers 429 for too many jobs in flight
    (which created nothing), the item is queued to be sent again and the limit
    drops to what is in flight: nothing more is submitted until one of them
    ends. The limit then grows back by one per round of completions, never
    past concurrency nor the ceiling the 429 named (details.actionLimit).
    With none of ours in flight (the team's other work holds the slots), the
    resend waits Retry-After or a growing delay.
    """

    _MAX_HOLD = 30.0

    def __init__(
        self,
        client: "Client",
        requests: "Iterable[str | dict]",
        *,
        concurrency: int = 8,
        download: "str | os.PathLike[str] | None" = None,
        progress: "bool | None" = None,
        max_cost: "float | None" = None,
    ) -> None:
        super().__init__()
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise _core.InvalidRequestTypeError(
                f"concurrency must be an int, not {type(concurrency).__name__}"
            )
        if concurrency < 1:
            raise _core.InvalidRequestError(f"concurrency must be at least 1, not {concurrency}")
        if download is not None:
            _core._fs_path(download, "download")  # the one rule for paths, checked up front
        self._budget = None if max_cost is None else _Budget(client, max_cost)
        if isinstance(requests, (str, bytes, dict)):
            raise _core.InvalidRequestTypeError(
                "requests must be an iterable of prompts (str) or dicts of submit() "
                f"arguments, not a single {type(requests).__name__}"
            )
        try:
            total = len(requests)  # type: ignore[arg-type]  # a list: the bar shows it
        except TypeError:
            total = None
        try:
            self._source = iter(requests)
        except TypeError:
            raise _core.InvalidRequestTypeError(
                f"requests must be an iterable, not {type(requests).__name__}"
            ) from None
        if isinstance(requests, (list, tuple)):
            for item in requests:  # the shape of every item, before anything is sent
                _request_kwargs(item, download)
        from ._progress import batch_progress

        self._client = client
        self._no_end = _core.Deadline(None)
        self._cap = concurrency  # the most ever in flight: concurrency, or the ceiling
        self._limit = concurrency
        self._credit = 0
        self._download = download
        self._exhausted = False
        self._inflight: dict = {}  # key -> Generation
        self._next_key = 0
        self._ready: collections.deque = collections.deque()  # never started: yield at once
        self._resend: collections.deque = collections.deque()  # refused by the ceiling
        self._not_before = 0.0
        self._hold = 0.0
        self.ceiling_hits = 0  # 429s of the ceiling seen (each resent)
        self._progress = batch_progress(progress, total)

    # -- the state machine (no waiting in here) ----------------------------------

    def _start_item(self, gen: Generation) -> None:
        try:
            kwargs = _request_kwargs(gen.request, self._download)
            gen.prompt = kwargs.get("prompt")
            gen._gen = start(self._client, **kwargs)
            gen._client = self._client
        except Exception as exc:  # a bad item fails alone; the batch goes on
            gen._gen, gen._error = None, exc
            self._ready.append(gen)
            return
        key = self._next_key
        self._next_key += 1
        self._inflight[key] = gen
        self.watch(key, gen._gen)

    def _fill(self) -> None:
        while len(self._inflight) < self._limit:
            if self._resend:
                if not self._inflight and time.monotonic() < self._not_before:
                    return
                gen = self._resend.popleft()
            elif self._exhausted:
                return
            else:
                try:
                    request = next(self._source)
                except StopIteration:
                    self._exhausted = True
                    return
                gen = Generation(None, None, request)
                if self._budget is not None and not self._budget.admit(gen, self._download):
                    self._ready.append(gen)  # not sent: yielded with its error
                    continue
            self._start_item(gen)

    def _take(self):
        if self._ready:
            return self._ready.popleft()
        while self.finished:
            gen = self._inflight.pop(self.finished.popleft(), None)
            if gen is None:
                continue  # taken already (see _Feed.wait)
            inner = gen._gen
            ceiling = None if inner.job is not None else _ceiling(inner.error)
            if ceiling is not None:
                self.ceiling_hits += 1
                if ceiling:
                    # Never more than the team may run at once (its other
                    # work counts too: that is what the rest is for).
                    self._cap = min(self._cap, ceiling)
                self._limit = max(1, min(self._cap, len(self._inflight)))
                self._credit = 0
                self._resend.append(gen)
                if not self._inflight:
                    retry_after = getattr(inner.error, "retry_after", None) or 0.0
                    self._hold = min(self._MAX_HOLD, max(1.0, 2 * self._hold, retry_after))
                    self._not_before = time.monotonic() + self._hold
                continue
            self._hold = 0.0
            self._credit += 1
            if self._credit >= self._limit and self._limit < self._cap:
                self._limit += 1
                self._credit = 0
            return gen
        return _NOTHING

    def _step(self):
        """A finished Generation, or _NOTHING (then wait), or StopIteration's None."""
        self._fill()
        gen = self._take()
        if gen is not _NOTHING:
            if self._budget is not None:
                self._budget.settle(gen)
            self._fill()  # keep the engine busy while the caller looks at gen
            self._progress.update(gen, len(self._inflight))
            return gen
        if not self._inflight and not self._resend and self._exhausted:
            self._progress.close()
            return None
        return _NOTHING

    def _pairs(self):
        return [(key, gen._gen) for key, gen in self._inflight.items()]

    def _sleep_for(self) -> float:
        return max(0.0, self._not_before - time.monotonic())

    # -- the two ways to wait -------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self) -> Generation:
        while True:
            gen = self._step()
            if gen is None:
                raise StopIteration
            if gen is not _NOTHING:
                return gen
            if self._inflight:
                self.wait(self._no_end)
            else:
                time.sleep(self._sleep_for())  # only resends left, held back

    def __aiter__(self):
        return self

    async def __anext__(self) -> Generation:
        while True:
            gen = self._step()
            if gen is None:
                raise StopAsyncIteration
            if gen is not _NOTHING:
                return gen
            if self._inflight:
                await self.await_any(self._no_end, lambda: bool(self.finished))
                if not self.finished:
                    self._scan()
            else:
                import asyncio

                await asyncio.sleep(self._sleep_for())

    def close(self) -> None:
        """Submit nothing more; what is in flight goes on (and stays paid for)."""
        self._exhausted = True
        self._resend.clear()
        self._progress.close()

    @property
    def spent(self) -> float:
        """With max_cost: the creative units counted against it so far (the
        estimates of the items started, each replaced by its job's cost once it
        ended; nothing for an item that created no job). 0.0 without max_cost."""
        return 0.0 if self._budget is None else self._budget.spent

    def __repr__(self) -> str:
        return f"<scenario_uni1.generate_many: {len(self._inflight)} in flight>"


# The arguments of a quote: submit()'s, less where the files go and the deadline.
_QUOTE_ARGS = ("source", "image_refs", "aspect_ratio", "output_format", "web_search")


def job_cost(job: "Job") -> "float | None":
    """What a job cost in creative units: the submission's answer, or for a job
    re-attached by id (whose answer this process never saw) its billing.cuCost."""
    if job.cost is not None:
        return float(job.cost)
    raw = job.raw
    billing = raw.get("billing") if isinstance(raw, dict) else None
    cost = billing.get("cuCost") if isinstance(billing, dict) else None
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        return float(cost)
    return None


def quote_for(client: "Client", kwargs: dict, cache: dict) -> float:
    """client.estimate() of one item's submit() arguments; cache: request -> quote,
    so identical requests are quoted once (inputs given as bytes, files or
    images are quoted each time)."""
    import json

    args = {k: kwargs[k] for k in _QUOTE_ARGS if k in kwargs}
    try:
        key = json.dumps([kwargs["prompt"], args], sort_keys=True)
    except (TypeError, ValueError):
        key = None
    quote = cache.get(key) if key is not None else None
    if quote is None:
        quote = float(client.estimate(kwargs["prompt"], **args))
        if key is not None:
            cache[key] = quote
    return quote


class _Budget:
    """generate_many's max_cost: a quote (a dry run) before each item is started.

    spent is the estimates of the items started plus, once each ended, its
    job's cost in place of its estimate (none if it created no job). An item
    whose estimate would take spent past max_cost is not started, and neither
    is any later item: the batch stops at the budget in input order, so a
    re-run with a journal stops at the same item. Identical requests share
    one quote.
    """

    def __init__(self, client: "Client", max_cost: object) -> None:
        import math

        if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)):
            raise _core.InvalidRequestTypeError(
                f"max_cost must be a number of creative units, not {type(max_cost).__name__}"
            )
        if math.isnan(max_cost) or max_cost < 0:
            raise _core.InvalidRequestError(f"max_cost must be >= 0, not {max_cost}")
        self._client = client
        self.max_cost = float(max_cost)
        self.spent = 0.0
        self._stopped = False
        self._quotes: dict = {}  # request key -> quote
        self._counted: dict = {}  # id(Generation) -> what it added to spent

    def admit(self, gen: Generation, download) -> bool:
        """Count gen's estimate and True, or set its error (not started) and False."""
        if self._stopped:
            gen._error = BudgetExceededError(
                f"not submitted: the budget of {self.max_cost:g} creative units was reached"
            )
            return False
        try:
            quote = quote_for(self._client, _request_kwargs(gen.request, download), self._quotes)
        except Exception as exc:  # a bad item (or a refused quote) fails alone
            gen._error = exc
            return False
        if self.spent + quote > self.max_cost:
            self._stopped = True
            gen._error = BudgetExceededError(
                f"not submitted: its estimate of {quote:g} creative units would take the "
                f"spend to {self.spent + quote:g}, past the budget of {self.max_cost:g}"
            )
            return False
        self.spent += quote
        self._counted[id(gen)] = quote
        return True

    def settle(self, gen: Generation) -> None:
        """gen ended: its job's cost replaces its estimate (no job: nothing was spent)."""
        quote = self._counted.pop(id(gen), None)
        if quote is None:
            return
        job = gen.job
        if job is None:
            self.spent -= quote
            return
        cost = job_cost(job)
        if cost is not None:
            self.spent += cost - quote


def _request_kwargs(item, download) -> dict:
    """submit()'s keyword arguments for one generate_many item."""
    if isinstance(item, str):
        return {"prompt": item, "download": download}
    if isinstance(item, dict):
        unknown = sorted(str(k) for k in item if k not in SUBMIT_ARGS)
        if unknown:
            raise _core.InvalidRequestError(
                f"generate_many item has unknown argument(s) {', '.join(unknown)}; "
                f"submit() takes {', '.join(SUBMIT_ARGS)}"
            )
        if "prompt" not in item:
            raise _core.InvalidRequestError("generate_many item has no prompt")
        kwargs = dict(item)
        kwargs.setdefault("download", download)
        return kwargs
    raise _core.InvalidRequestTypeError(
        f"a generate_many item is a prompt (str) or a dict of submit() arguments, "
        f"not {type(item).__name__}"
    )
