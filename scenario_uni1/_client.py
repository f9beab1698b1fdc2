"""Client: settings from arguments and the environment, and input handling.

The binding's client (_core.Client, held as Client._core) does the HTTP
work. This class resolves credentials (an explicit argument always wins over
the environment), turns paths, bytes, files and PIL images into uploaded
assets, validates every request before anything is sent, and hands out this
package's Job (scenario_uni1.Job, holding the binding's).
"""

import itertools
import os
import weakref

from . import _core
from ._inputs import Upload, close_all, engine_inputs, is_asset_path, ref_list, resolve
from ._job import Job

TYPE_CHECKING = False  # type checkers take the branch; nothing imports typing at run time
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from ._generation import Generation
    from ._image import Image
    from ._journal import Journal
    from ._many import AsCompleted, GenerateMany

ENV_API_KEY = "SCENARIO_SDK_API_KEY"
ENV_API_SECRET = "SCENARIO_SDK_API_SECRET"
ENV_BEARER = "SCENARIO_SDK_JWT"
ENV_BASE_URL = "SCENARIO_BASE_URL"


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def _certifi_bundle() -> str | None:
    """certifi's CA bundle when certifi is installed: the core tries it after
    the system's bundles (the probe order lives in csrc/core/cacerts.c)."""
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def _check_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise _core.ConfigurationError(f"{name} must be a str, not {type(value).__name__}")


def resolve_credentials(
    api_key: str | None, api_secret: str | None, bearer_token: str | None
) -> tuple[str | None, str | None, str | None]:
    """(api_key, api_secret, bearer_token) with exactly one scheme set.

    Order: an explicit bearer token; explicit key and secret (a missing half
    taken from the environment); the environment's key and secret; the
    environment's bearer token. Half a key pair is an error, never silently
    replaced by another scheme.
    """
    for name, value in (
        ("api_key", api_key),
        ("api_secret", api_secret),
        ("bearer_token", bearer_token),
    ):
        _check_str(name, value)
    if bearer_token:
        if api_key or api_secret:
            raise _core.ConfigurationError(
                "pass either api_key and api_secret or bearer_token, not both"
            )
        return None, None, bearer_token
    if api_key or api_secret:
        key = api_key or _env(ENV_API_KEY)
        secret = api_secret or _env(ENV_API_SECRET)
        if not key:
            raise _core.ConfigurationError(
                f"api_secret was given without api_key (and {ENV_API_KEY} is not set)"
            )
        if not secret:
            raise _core.ConfigurationError(
                f"api_key was given without api_secret (and {ENV_API_SECRET} is not set)"
            )
        return key, secret, None
    key, secret = _env(ENV_API_KEY), _env(ENV_API_SECRET)
    if key and secret:
        return key, secret, None
    if key or secret:
        present, missing = (ENV_API_KEY, ENV_API_SECRET) if key else (ENV_API_SECRET, ENV_API_KEY)
        raise _core.ConfigurationError(f"{present} is set but {missing} is not; set both")
    token = _env(ENV_BEARER)
    if token:
        return None, None, token
    raise _core.ConfigurationError(
        "no credentials: pass api_key and api_secret (or bearer_token), or set "
        f"{ENV_API_KEY} and {ENV_API_SECRET} (or {ENV_BEARER}); "
        "for a local test server use scenario_uni1.emulator or the --offline flag"
    )


# Every Client of the process, weakly and in creation order: an unpickled job
# binds to one of them for its base_url and project_id (see _job._client_for).
_live: "weakref.WeakValueDictionary[int, Client]" = weakref.WeakValueDictionary()
_live_ids = itertools.count()


def _result(gen: "_core.Generation"):
    """gen.result() for a blocking call, which owns its pipeline: a wait that
    ends early (Ctrl-C, an exception) stops it."""
    try:
        return gen.result()
    except BaseException:
        gen.cancel()
        raise


def client_of(core: "_core.Client") -> "Client | None":
    """The Client holding core, while it lives."""
    for client in list(_live.values()):
        if client._c_client is core:
            return client
    return None


def serves(client: "Client", base_url: str, project_id: str | None) -> bool:
    """Whether an unpickled job of base_url and project_id may bind to client."""
    return not client.closed and client.base_url == base_url and client.project_id == project_id


def live_client(base_url: str, project_id: str | None) -> "Client | None":
    """The oldest open client for base_url and project_id, or None."""
    for client in list(_live.values()):
        if serves(client, base_url, project_id):
            return client
    return None


class Client:
    """A connection to the Scenario API; safe to share between threads.

    Credentials and the base URL fall back to the environment
    (SCENARIO_SDK_API_KEY / SCENARIO_SDK_API_SECRET, or SCENARIO_SDK_JWT;
    SCENARIO_BASE_URL); an explicit argument always wins.

    A transfer that moves no byte for stall_timeout seconds fails (and is
    retried); left at None, that is the smaller of 30 s and timeout.

    A generate request that fails after it was sent (a 5xx, a reset, a
    timeout) may still have created its job: for settle_window seconds the
    client looks for it in the job list and adopts it when it appears. Only
    when the whole window shows none is the request sent again, or, with
    resend_uncertain=False, SubmissionUncertainError raised instead.
    """

    # The binding's client (settings, connections, the engine); the journal
    # (see _journal/__init__.py), None without one.
    _c_client: "_core.Client"
    _journal: "Journal | None"

    def __init__(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        bearer_token: str | None = None,
        base_url: str | None = None,
        project_id: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        user_agent: str | None = None,
        ca_bundle: str | os.PathLike | None = None,
        proxy: str | None = None,
        journal: str | os.PathLike | None = None,
        connect_timeout: float = 10.0,
        stall_timeout: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        settle_window: float = 20.0,
        resend_uncertain: bool = True,
    ) -> None:
        if getattr(self, "_c_client", None) is not None:
            raise RuntimeError("Client.__init__() may only be called once")
        key, secret, token = resolve_credentials(api_key, api_secret, bearer_token)
        _check_str("base_url", base_url)
        if base_url is None:
            base_url = _env(ENV_BASE_URL)
        self._journal = None
        if journal is not None:
            from ._journal import Journal

            self._journal = Journal(os.fsdecode(_core._fs_path(journal, "journal", setting=True)))
        try:
            self._c_client = _core.Client(
                key,
                secret,
                bearer_token=token,
                base_url=base_url,
                project_id=project_id,
                timeout=timeout,
                max_retries=max_retries,
                user_agent=user_agent,
                ca_bundle=ca_bundle,
                proxy=proxy,
                connect_timeout=connect_timeout,
                stall_timeout=stall_timeout,
                backoff_base=backoff_base,
                backoff_max=backoff_max,
                settle_window=settle_window,
                resend_uncertain=resend_uncertain,
                _ca_fallback=_certifi_bundle(),
            )
        except BaseException:
            if self._journal is not None:
                self._journal.close()
            raise
        _live[next(_live_ids)] = self
        # How long a POST's job may show up after the POST failed (the core
        # checked the value); the journal waits that long for a dead
        # process's POST too.
        self._settle_window = float(settle_window)

    # -- settings and state (the binding's client's) --------------------------------

    @property
    def base_url(self) -> str:
        """The API root, normalised (ends with the version)."""
        return self._c_client.base_url

    @property
    def project_id(self) -> str | None:
        """The project sent with every request, or None."""
        return self._c_client.project_id

    @property
    def timeout(self) -> float:
        """Seconds allowed for one API request."""
        return self._c_client.timeout

    @property
    def max_retries(self) -> int:
        """Retries of reads after transient failures."""
        return self._c_client.max_retries

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._c_client.closed

    @property
    def request_count(self) -> int:
        """HTTP requests this client has sent, retries included (counted when each call ends)."""
        return self._c_client.request_count

    @property
    def journal(self) -> str | None:
        """The journal's path, or its postgresql:// URL without the password (None without one)."""
        journal = self._journal
        return None if journal is None else journal.path

    def close(self) -> None:
        """Close the connections and the journal (if any).

        Later calls raise ConfigurationError; calls running in other threads stop.
        """
        try:
            self._c_client.close()
        finally:
            journal = self._journal
            if journal is not None:
                journal.close()

    def __enter__(self) -> "Client":
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return f"<scenario_uni1.Client base_url={self.base_url!r} project_id={self.project_id!r}{state}>"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError(
            "a Client holds connections and credentials and cannot be pickled; "
            "pickle Job objects instead (they re-attach to a client for the same "
            "base_url and project_id)"
        )

    # -- the binding's calls, with this package's Job ----------------------------------

    def job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Re-attach to a job by id (one GET)."""
        return Job._of(self, self._c_client.job(job_id, timeout=timeout))

    def list_jobs(
        self,
        *,
        page_size: int = 0,
        pagination_token: str | None = None,
        status: str | None = None,
        type: str | None = None,
        timeout: float | None = None,
    ) -> "tuple[list[dict[str, Any]], str | None]":
        """One page of jobs: (list of job dicts, next pagination token or None)."""
        return self._c_client.list_jobs(
            page_size=page_size,
            pagination_token=pagination_token,
            status=status,
            type=type,
            timeout=timeout,
        )

    def get_asset(self, asset_id: str, *, timeout: float | None = None) -> "dict[str, Any]":
        """The asset object as the server sent it."""
        return self._c_client.get_asset(asset_id, timeout=timeout)

    def _submit(self, *args: "Any", **kwargs: "Any") -> Job:
        """POST the generation (asset ids only); see _core.Client._submit."""
        return Job._of(self, self._c_client._submit(*args, **kwargs))

    def _find_job(self, *args: "Any", **kwargs: "Any") -> "Job | None":
        """The job an interrupted submission created, or None; see _core.Client._find_job."""
        job = self._c_client._find_job(*args, **kwargs)
        return None if job is None else Job._of(self, job)

    def _start(self, *args: "Any", job: "Job | None" = None, **kwargs: "Any") -> "_core.Generation":
        """The pipeline on this client's engine; see _core.Client._start."""
        if job is not None:
            if not isinstance(job, Job):
                raise _core.InvalidRequestTypeError(f"job must be a Job, not {type(job).__name__}")
            kwargs["job"] = job._core_job()
        return self._c_client._start(*args, **kwargs)

    def _attach(self, job_id: str) -> Job:
        """A Job of this client for job_id, without a request (the journal's jobs)."""
        job = _core._rebuild_job(job_id)
        job._bind(self._c_client)
        return Job._of(self, job)

    # -- inputs ------------------------------------------------------------

    def _check_open(self) -> None:
        # Before any input is read (the C calls refuse a closed client too,
        # but only once files were read and the journal written).
        if self.closed:
            raise _core.ConfigurationError("client is closed")

    def _prepare(self, prompt, source, image_refs, aspect_ratio, output_format, web_search):
        """Check every argument and read every input, sending nothing.

        Returns (source, refs) where each entry is an asset id or an Upload.
        """
        self._check_open()
        refs = ref_list(image_refs)
        # The C validator knows the contract (prompt length, counts, ratios,
        # formats, id syntax); it runs first, before any file is read, with
        # placeholder ids standing in for inputs still to upload.
        placeholders = iter(range(len(refs) + 1))

        def as_id(value):
            if isinstance(value, str) and value.startswith("asset_") and not is_asset_path(value):
                return value
            return f"asset_placeholder{next(placeholders)}"

        _core.validate_generate(
            prompt,
            None if source is None else as_id(source),
            [as_id(r) for r in refs],
            aspect_ratio,
            output_format,
            web_search,
        )
        # Then every input is read and checked (type, existence, format). A
        # large file object is copied to a temporary file here: if a later
        # input is refused, the copies made so far are deleted. The caller
        # closes the Uploads returned (close_all) once they are uploaded.
        items = []
        try:
            src = None if source is None else resolve(source, "source")
            items.append(src)
            for i, ref in enumerate(refs):
                items.append(resolve(ref, f"image_refs[{i}]"))
        except BaseException:
            close_all(items)
            raise
        return src, items[1:]

    def _upload_all(self, src, refs, deadline: _core.Deadline):
        """Upload each distinct input once on the engine; returns (source_id, ref_ids).

        The blocking form of the engine's upload pipeline (the one aupload and
        submit run): the calling thread waits, GIL released, Ctrl-C stops it.
        """
        source, ref_args, uploads = engine_inputs(src, refs, by_content=True)
        if not uploads:
            return source, ref_args
        ids = _result(self._start(None, uploads=uploads, timeout=deadline, mode="upload"))

        def to_id(arg):
            return ids[arg] if isinstance(arg, int) else arg

        return (None if source is None else to_id(source)), [to_id(r) for r in ref_args]

    # -- public API ----------------------------------------------------------

    def upload(self, file, *, timeout: float | None = None) -> str:
        """Upload an image (path, bytes, binary file object or PIL image); returns its asset id.

        An asset id is returned as it is, without a request.
        """
        gen = self._start_upload(file, timeout)
        return gen if isinstance(gen, str) else _result(gen)[0]

    def _start_upload(self, file, timeout) -> "str | _core.Generation":
        """The engine's upload of file (upload and aupload), or the asset id it is."""
        self._check_open()
        deadline = _core.Deadline(timeout)
        item = resolve(file, "file")
        if not isinstance(item, Upload):
            _core.validate_generate("x", None, [item])  # the id's syntax
            return item
        try:
            gen = self._start(
                None,
                uploads=[(item.data, item.path, item.name, item.mime_type)],
                timeout=deadline,
                mode="upload",
            )
        except BaseException:
            item.close()
            raise
        gen.add_done_callback(lambda _gen: item.close())  # a temporary copy, if any
        return gen

    def _generate(
        self, prompt, source, image_refs, aspect_ratio, output_format, web_search, deadline
    ):
        src, refs = self._prepare(
            prompt, source, image_refs, aspect_ratio, output_format, web_search
        )
        try:
            if self._journal is not None:
                # Recorded before it is sent; a re-run re-attaches instead of sending.
                return self._journal.submit(
                    self, prompt, src, refs, aspect_ratio, output_format, web_search, deadline
                )
            source_id, ref_ids = self._upload_all(src, refs, deadline)
        finally:
            close_all([src, *refs])  # temporary copies of large inputs
        job = self._submit(
            prompt,
            source_id,
            ref_ids,
            aspect_ratio,
            output_format,
            web_search,
            timeout=deadline,
        )
        return job

    def generate(
        self,
        prompt: str,
        *,
        source=None,
        image_refs=(),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
    ) -> Job:
        """Submit a generation and return its Job at once (without waiting).

        source and each of image_refs may be an asset id, a path, bytes, a
        binary file object or a PIL image; anything but an asset id is
        uploaded first (identical inputs once). Every argument is checked
        before the first request: a bad one raises InvalidRequestError and
        sends nothing.
        """
        return self._generate(
            prompt,
            source,
            image_refs,
            aspect_ratio,
            output_format,
            web_search,
            _core.Deadline(None),
        )

    def run(
        self,
        prompt: str,
        *,
        source=None,
        image_refs=(),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
        timeout: float | None = None,
        progress=None,
    ) -> "list[Image]":
        """Submit, wait and fetch: the generated images as a list of Image.

        timeout is one deadline for the whole call (uploads, submit, wait,
        downloads); passing it raises TimeoutError. The job keeps running on
        the server after a timeout: nothing is cancelled.
        """
        deadline = _core.Deadline(timeout)
        job = self._generate(
            prompt, source, image_refs, aspect_ratio, output_format, web_search, deadline
        )
        job.wait(deadline, progress=progress)
        images = job.images(timeout=deadline)
        if self._journal is not None:
            self._journal.mark_done(job.id)
        return images

    def resume(self, *, timeout: float | None = None) -> "list[Job]":
        """The unfinished jobs of the journal, re-attached (oldest first).

        Unfinished: submitted and not yet downloaded (nor fetched by run()),
        and not ended in failure or cancellation. A submission that was being
        sent when the process died is looked for on the server first: the job
        it created is adopted and listed; if it created none, it is dropped
        from the journal (re-running the code submits it again).
        """
        if self._journal is None:
            raise _core.ConfigurationError("resume() needs a journal: Client(journal=path)")
        return self._journal.resume(self, _core.Deadline(timeout))

    def estimate(
        self,
        prompt: str,
        *,
        source=None,
        image_refs=(),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
    ) -> float:
        """The cost in creative units of a generation, without running it (a dry run).

        No job is created and nothing is billed. Inputs that are not asset ids
        are uploaded first (uploads are free), because the quote needs real
        asset ids; pass asset ids to avoid that.
        """
        return _result(
            self._start_estimate(
                prompt, source, image_refs, aspect_ratio, output_format, web_search, by_content=True
            )
        )

    def _start_estimate(
        self, prompt, source, image_refs, aspect_ratio, output_format, web_search, by_content=False
    ) -> "_core.Generation":
        """The engine's uploads and quote (estimate and aestimate; see engine_inputs)."""
        src, refs = self._prepare(
            prompt, source, image_refs, aspect_ratio, output_format, web_search
        )
        items = [src, *refs]
        try:
            source_arg, ref_args, uploads = engine_inputs(src, refs, by_content=by_content)
            gen = self._start(
                prompt,
                source_arg,
                ref_args,
                aspect_ratio,
                output_format,
                web_search,
                uploads=uploads,
                mode="estimate",
            )
        except BaseException:
            close_all(items)
            raise
        gen.add_done_callback(lambda _gen: close_all(items))
        return gen

    # -- many at once, never blocking (on the client's engine) -------------------

    def submit(
        self,
        prompt: str,
        *,
        source=None,
        image_refs=(),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
        download: str | os.PathLike | None = None,
        overwrite: bool = False,
        timeout: float | None = None,
    ) -> "Generation":
        """Start a whole generation (upload inputs, submit, wait, fetch) and return at once.

        Nothing is sent from the calling thread: inputs are read and checked
        here (a bad one raises InvalidRequestError), and every request runs on
        the client's engine. download: a directory to write the files to
        (result() gives their paths), or None to keep the images in memory
        (result() gives Image objects). timeout: one deadline for the whole
        pipeline. Returns a Generation; see its documentation.
        """
        from ._generation import Generation, start

        gen = start(
            self,
            prompt,
            source,
            image_refs,
            aspect_ratio,
            output_format,
            web_search,
            download=download,
            overwrite=overwrite,
            timeout=timeout,
        )
        return Generation(gen, prompt, client=self)

    def generate_many(
        self,
        requests: "Iterable[str | dict]",
        *,
        concurrency: int = 8,
        download: str | os.PathLike | None = None,
        progress: bool | None = None,
        max_cost: float | None = None,
    ) -> "GenerateMany":
        """Run many generations, at most `concurrency` at a time; yields each Generation as it ends.

        Each item of requests is a prompt (str) or a dict of submit()
        arguments (download= defaults to this call's). Failures are yielded
        too, never raised: check gen.error. When the server refuses a job
        because the team has too many in flight (a 429 that creates nothing),
        submissions are held until one ends, then the item is sent again.
        progress=True shows a bar (tqdm when installed, else a line on
        stderr). The result is an iterator and an async iterator; breaking out
        of the loop submits nothing more, while what is in flight runs on.

        max_cost: a budget in creative units. Before each item is started its
        cost is estimated (a dry run, see estimate(); identical requests are
        quoted once), and the item is started only if the estimates of the
        items started so far (each replaced by its job's cost once it ended)
        plus its own stay within max_cost. The first item that does not fit,
        and every item after it, is yielded unsent with a BudgetExceededError
        as its error. With a journal, an item re-attached to a job of an
        earlier run counts like any other, so re-running the same requests
        keeps them under the same budget. The iterator's `spent` gives the
        total so far.
        """
        from ._many import GenerateMany

        return GenerateMany(
            self,
            requests,
            concurrency=concurrency,
            download=download,
            progress=progress,
            max_cost=max_cost,
        )

    def as_completed(self, items, timeout: float | None = None) -> "AsCompleted":
        """Yield each Job or Generation of items as it reaches a terminal state.

        Failed items are yielded too (a Job with status "failure", a
        Generation with error set); at the deadline TimeoutError is raised.
        Usable with `for` (blocking, Ctrl-C works) and `async for`. No thread
        per item: the engine watches them all.
        """
        from ._many import AsCompleted

        self._check_open()
        return AsCompleted(items, timeout)

    def wait(self, items, timeout: float | None = None) -> list:
        """Block until every Job or Generation of items has ended; returns them in input order.

        Failed items are returned too; at the deadline TimeoutError is raised.
        """
        from ._many import wait

        self._check_open()
        return wait(items, timeout)

    # -- awaitable forms of the blocking calls -------------------------------------

    async def aupload(self, file, *, timeout: float | None = None) -> str:
        """upload() for asyncio: `asset_id = await client.aupload("ref.png")`.

        The upload runs as a task of the client's engine; the event loop is
        never blocked and no thread is taken for it.
        """
        from ._aio import engine_future

        gen = self._start_upload(file, timeout)
        if isinstance(gen, str):
            return gen
        await engine_future(gen)
        return gen.result(0)[0]

    async def aestimate(
        self,
        prompt: str,
        *,
        source=None,
        image_refs=(),
        aspect_ratio: str | None = None,
        output_format: str = "png",
        web_search: bool = False,
    ) -> float:
        """estimate() for asyncio: `cost = await client.aestimate("A castle")`.

        Inputs that are not asset ids are uploaded first, as estimate() does;
        the uploads and the quote run as one task of the client's engine.
        """
        from ._aio import engine_future

        gen = self._start_estimate(
            prompt, source, image_refs, aspect_ratio, output_format, web_search
        )
        await engine_future(gen)
        return gen.result(0)
