"""submit() and Generation: one pipeline on the client's engine, and its future.

Client._start (C) hands the whole pipeline (upload the inputs, submit, wait,
fetch) to the client's engine thread and returns a _core.Generation at once.
Generation here wraps it with what belongs to Python: this package's Job and
Image objects, awaiting it in asyncio, the notebook display, and the request
it came from (generate_many yields in completion order, so a finished
generation says which item it was).

Nothing here blocks on the network: submit() reads and checks its inputs (as
generate does) and returns; every transfer happens on the engine.
"""

import os

from . import _core
from ._inputs import close_all, engine_inputs
from ._job import Job

TYPE_CHECKING = False  # type checkers take the branch; nothing imports typing at run time
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

    from ._client import Client
    from ._image import Image

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

    __slots__ = (
        "__weakref__",
        "_client",
        "_error",
        "_gen",
        "_images",
        "_job",
        "prompt",
        "request",
    )

    def __init__(
        self,
        gen: "_core.Generation | None",
        prompt: "str | None" = None,
        request: "Any" = None,
        error: "BaseException | None" = None,
        client: "Client | None" = None,
    ) -> None:
        self._gen = gen  # the _core.Generation; None if it never started (see _error)
        self._error = error
        self._client = client  # the Client whose engine runs it
        self._job: Job | None = None  # the Job of the _core.Job last seen
        self._images: list[Image] | None = None
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
    def job(self) -> "Job | None":
        gen = self._gen
        core = None if gen is None else gen.job
        return None if core is None else self._job_of(core)

    def _job_of(self, core: "_core.Job") -> "Job | None":
        # One Job per _core.Job the pipeline reports (gen.job is gen.job).
        job = self._job
        if job is None or job._job is not core:
            client = self.client
            if client is None:
                return None
            job = self._job = Job._of(client, core)
        return job

    @property
    def client(self) -> "Client | None":
        """The client whose engine runs it (None if it never started)."""
        client = self._client
        if client is None and self._gen is not None:
            from ._client import client_of

            client = self._client = client_of(self._gen.client)
        return client

    def _public(self, error: "BaseException | None") -> "BaseException | None":
        # The binding's JobError carries its _core.Job: users get the Job.
        if isinstance(error, _core.JobError) and isinstance(error.job, _core.Job):
            job = self._job_of(error.job)
            if job is not None:
                error.job = job
        return error

    @property
    def error(self) -> "BaseException | None":
        gen = self._gen
        return self._error if gen is None else self._public(gen.error)

    def result(self, timeout: "float | None" = None) -> "list[Any]":
        """The paths (download=) or images; blocks until done; raises error if it failed."""
        gen = self._gen
        if gen is None:
            raise self._error  # type: ignore[misc]  # set whenever _gen is None
        try:
            out = gen.result(timeout)
        except _core.JobError as exc:
            self._public(exc)
            raise
        if out and isinstance(out[0], tuple):
            # In memory: the binding gives each image's fields.
            if self._images is None:
                from ._image import image_from_fields

                self._images = [image_from_fields(*fields) for fields in out]
            return list(self._images)
        return out

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
