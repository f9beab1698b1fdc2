"""asyncio on the engine: futures resolved by the engine, no thread per call.

The engine calls a done callback on its own thread the moment a generation
ends; the callback hands the news to the event loop with
loop.call_soon_threadsafe, which writes to the loop's own wakeup socket. So
an await costs no executor thread and no polling: the loop sleeps until the
engine wakes it. This module is imported only by code that awaits (the
package itself never imports asyncio).
"""

import asyncio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _resolve(fut) -> None:
    if not fut.done():
        fut.set_result(None)


def call_in_loop(loop, fn, *args) -> None:
    """fn(*args) on loop's thread soon; from any thread. Nothing if the loop closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop was closed: nobody is waiting any more


def engine_future(gen) -> "asyncio.Future":
    """A future of the running loop, resolved (to None) once gen (a _core.Generation) ends."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    gen.add_done_callback(lambda _gen: call_in_loop(loop, _resolve, fut))
    return fut


class Wakeup:
    """Wakes one waiting coroutine when an engine callback reports news.

    notify() may be called from any thread (the engine's); wait() is awaited
    by the one consumer. A notify() between the consumer's last look at its
    queue and its wait() is not lost: wait() arms first, then the consumer
    checks its queue (see the callers), and notify() reads the armed future.
    """

    __slots__ = ("_fut", "_loop")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fut: asyncio.Future[Any] | None = None

    def arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._fut = loop.create_future()

    def notify(self) -> None:
        fut, loop = self._fut, self._loop
        if fut is not None:
            call_in_loop(loop, _resolve, fut)

    async def wait(self, timeout: "float | None") -> None:
        """Until notify() or timeout seconds (None: no limit); arm() first."""
        fut, loop = self._fut, self._loop
        assert fut is not None and loop is not None, "arm() first"
        try:
            if timeout is None:
                await fut
            else:
                handle = loop.call_later(max(timeout, 0.0), _resolve, fut)
                try:
                    await fut
                finally:
                    handle.cancel()
        finally:
            self._fut = None
