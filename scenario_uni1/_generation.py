"""submit() and Generation: one pipeline on the client's engine, and its future.

Client._start (C) hands the whole pipeline (upload the inputs, submit, wait,
fetch) to the client's engine thread and returns a _core.Generation at once.
Generation here wraps it with what belongs to Python: awaiting it in asyncio,
the notebook display, and the request it came from (generate_many yields in
completion order, so a finished generation says which item it was).

Nothing here blocks on the network: submit() reads and checks its inputs (as
generate does) and returns; every transfer happens on the engine.
"""

import os

from . import _core
from ._inputs import close_all, engine_inputs

TYPE_CHECKING = False  # type checkers take the branch; nothing imports typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

# The keyword arguments of submit(), which a generate_many item may set.
SUBMIT_ARGS = (
    "prompt",
    "source",
    "image_refs",
    "aspect_ratio",
    "output_format",
    "web_search",
    "download",
    "overwrite",
    "timeout",
)

_FAILED = "failed"


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _core.InvalidRequestTypeError(f"{name} must be a bool, not {type(value).__name__}")


def start(
    client,
    prompt,
    source=None,
    image_refs=(),
    aspect_ratio=None,
    output_format="png",
    web_search=False,
    *,
    download=None,
    overwrite=False,
    timeout=None,
):
    """Check and read every input, then start the pipeline: the _core.Generation.

    Every argument is checked before anything is started (a bad one raises
    InvalidRequestError and nothing is sent). With a journal, the journal
    starts the pipeline (it records the item first; see _journal_engine).
    """
    client._check_open()
    if download is not None:
        download = os.fsdecode(_core._fs_path(download, "download"))
    _check_bool("overwrite", overwrite)
    # One deadline for the whole pipeline, from now; checked before inputs are read.
    timeout = _core.Deadline(timeout)
    src, refs = client._prepare(prompt, source, image_refs, aspect_ratio, output_format, web_search)
    if download is not None:
        try:
            # As Job.download does: a destination that cannot be a directory
            # fails now, not after the job was paid for and waited on.
            os.makedirs(download, exist_ok=True)
        except BaseException:
            close_all([src, *refs])
            raise
    journal = client._journal
    if journal is not None:
        gen = journal.start_generation(
            client,
            prompt,
            src,
            refs,
            aspect_ratio,
            output_format,
            web_search,
            download=download,
            overwrite=overwrite,
            timeout=timeout,
        )
        return gen._gen if isinstance(gen, Generation) else gen
    items = [src, *refs]
    try:
        source_arg, ref_args, uploads = engine_inputs(src, refs)
        gen = client._start(
            prompt,
            source_arg,
            ref_args,
            aspect_ratio,
            output_format,
            web_search,
            uploads=uploads,
            download=download,
            overwrite=overwrite,
            timeout=timeout,
        )
    except BaseException:
        close_all(items)
        raise
    if any(getattr(item, "_owned", False) for item in items):
        # A temporary copy of a large file object: deleted once the
        # pipeline is over (uploaded or not).
        gen.add_done_callback(lambda _gen: close_all(items))
    return gen


class Generation:
    """A generation running on the client's engine: a future of its pipeline.

    stage: "pending", "uploading", "submitting", then the job's status
    ("queued", "in-progress", ...), "downloading", and at the end "done",
    "failed" or "canceled". progress: 0..1, the job's and then the
    download's (None only for a generate_many item refused before it
    started). job: the Job once submitted, else None. error: the exception
    that ended it, or None. client: the client whose engine runs it.

    result(timeout=None) blocks (the GIL released, Ctrl-C works) and returns
    the paths (with download=) or the images, or raises error. In asyncio,
    `await gen` gives the same without blocking the event loop; a task
    cancelled while awaiting stops watching, it does not cancel the
    generation (cancel() does). add_done_callback(fn) calls fn(gen) on the
    client's engine thread once it ends (at once if it has). cancel() stops
    the pipeline (nothing is downloaded after it) and cancels the job on the
    server if it was submitted.

    prompt is the prompt; request is the generate_many item it came from (a
    str or a dict), None for submit().
    """

    __slots__ = ("__weakref__", "_error", "_gen", "prompt", "request")

    def __init__(
        self,
        gen: "_core.Generation | None",
        prompt: "str | None" = None,
        request: "Any" = None,
        error: "BaseException | None" = None,
    ) -> None:
        self._gen = gen  # the _core.Generation; None if it never started (see _error)
        self._error = error
        self.prompt = prompt
        self.request = request

    @property
    def stage(self) -> str:
        gen = self._gen
        return _FAILED if gen is None else gen.stage

    @property
    def progress(self) -> "float | None":
        gen = self._gen
        return None if gen is None else gen.progress

    @property
    def done(self) -> bool:
        gen = self._gen
        return True if gen is None else gen.done

    @property
    def job(self) -> "_core.Job | None":
        gen = self._gen
        return None if gen is None else gen.job

    @property
    def client(self) -> "_core.Client | None":
        """The client whose engine runs it (None if it never started)."""
        gen = self._gen
        return None if gen is None else gen.client

    @property
    def error(self) -> "BaseException | None":
        gen = self._gen
        return self._error if gen is None else gen.error

    def result(self, timeout: "float | None" = None) -> "list[Any]":
        """The paths (download=) or images; blocks until done; raises error if it failed."""
        gen = self._gen
        if gen is None:
            raise self._error  # type: ignore[misc]  # set whenever _gen is None
        return gen.result(timeout)

    def cancel(self) -> bool:
        """Stop the pipeline and cancel the server job; False if it had already ended."""
        gen = self._gen
        return False if gen is None else gen.cancel()

    def add_done_callback(self, fn: "Callable[[Generation], object]") -> None:
        """fn(self) once the generation ends, on the engine thread (at once if it has)."""
        gen = self._gen
        if gen is None:
            fn(self)
        else:
            gen.add_done_callback(lambda _gen: fn(self))

    def __await__(self) -> "Generator[Any, None, list[Any]]":
        gen = self._gen
        if gen is not None and not gen.done:
            from ._aio import engine_future

            yield from engine_future(gen).__await__()
        return self.result(0)

    def __repr__(self) -> str:
        job = self.job
        what = f" {job.id}" if job is not None else ""
        progress = self.progress
        percent = f" {round(progress * 100)}%" if progress is not None and not self.done else ""
        return f"<scenario_uni1.Generation{what} {self.stage}{percent}>"

    def __reduce__(self):
        raise TypeError(
            "a Generation is a pipeline running in this process and cannot be "
            "pickled; pickle gen.job instead (a Job re-attaches anywhere)"
        )

    def _repr_html_(self) -> str:
        from ._notebook import generation_html

        return generation_html(self)

    def _ipython_display_(self) -> None:
        from ._notebook import ipython_display

        ipython_display(self)
