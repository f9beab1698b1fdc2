"""The journal on the engine: Journal.start_generation (what is recorded and why: _journal.py).

Client.submit (and generate_many through it) hands every work item to the
client's engine and returns at once; with a journal the item is first looked
up, and what the journal knows decides how the pipeline starts:

- an item with a job id, finished ('done') or not: the pipeline attaches to
  that job (no upload, no POST) and fetches its files; those already at their
  targets are the job's own and are replaced by the same bytes, unless one the
  journal recorded was changed since (see _overwrite_for). (A finished item
  whose files are intact still costs their download: a _core.Generation cannot
  be made done from what is on disk.)
- an item still 'sending' (the process died while its POST was in flight):
  the pipeline is started with sent_after, so the ENGINE looks for the job that
  POST created, waits for it to land as long as the core's settle rules say, and
  adopts it; only when there is none does it POST;
- a new item: its row is committed as 'sending' before the pipeline starts.

In every case the journal's job ids go to the core as `exclude`: no
reconciliation (the one above, or the core's own after an uncertain POST)
adopts a job the journal gave to another item, possibly in an earlier process.

The journal's callbacks run on the engine thread: on_submitted records the job
id ('submitted', committed before the wait), and the done callback records every
downloaded file (size, SHA-256) and 'done', or the failure. They share the
journal's one SQLite connection (check_same_thread=False) behind its lock.
"""

import os
import sys

from . import _core
from ._inputs import close_all, engine_inputs
from ._journal import FAILED, _created_nothing, _has_uploads, file_sha256, fingerprint, input_key


def _log(level: str, message: str, *args: object) -> None:
    logging = sys.modules.get("logging")
    if logging is not None:
        getattr(logging.getLogger("scenario_uni1"), level)(message, *args)


class _Item:
    """One work item's journal callbacks; they run on the client's engine thread.

    An exception must not escape into the engine: a record that cannot be
    written is logged, and the row keeps the state it had, which a re-run
    handles (a job id re-attaches, 'sending' reconciles).
    """

    __slots__ = (
        "counts",
        "download",
        "fp",
        "journal",
        "occurrence",
        "reconciling",
        "request",
        "uploads",
    )

    def __init__(self, journal, fp: str, occurrence: int, download, uploads, request) -> None:
        self.journal = journal
        # Where the occurrence was counted (the caller's thread, maybe a task):
        # a row deleted from the engine thread frees it there.
        self.counts = journal.counts()
        self.request = request
        self.fp = fp
        self.occurrence = occurrence
        self.download = download
        self.uploads = uploads
        # Started with sent_after: a POST of a dead process may have created
        # its job, whatever this pipeline's own error says.
        self.reconciling = False

    def ready(self, gen, source, image_refs) -> None:
        """The inputs are uploaded and the POST is next: the row gets the asset
        ids it carries and the time, committed before it is sent. A re-run after
        a death between this POST and its answer can then match the job by
        its input, as for a request without uploads."""
        try:
            request = {**self.request, "source": source, "image_refs": list(image_refs)}
            self.journal._ready(self.fp, self.occurrence, request)
        except Exception as exc:  # noqa: BLE001 - never into the engine
            _log("warning", "journal: cannot record the uploads of %s: %s", self.fp[:12], exc)

    def submitted(self, gen) -> None:
        job = gen.job
        try:
            if job is not None and not self.journal._claim(self.fp, self.occurrence, job.id):
                # The core was told every job of the journal: only a row that
                # took this job meanwhile (another item adopting it from an
                # earlier process) can hold it. The row stays 'sending'.
                _log(
                    "warning",
                    "journal: %s already belongs to another item; item %s#%d stays unresolved",
                    job.id,
                    self.fp[:12],
                    self.occurrence,
                )
        except Exception as exc:  # noqa: BLE001 - never into the engine
            _log("warning", "journal: cannot record %s: %s", getattr(job, "id", None), exc)

    def ended(self, gen) -> None:
        close_all(self.uploads)  # temporary copies of large inputs
        try:
            generation_ended(self.journal, self, gen)
        except Exception as exc:  # noqa: BLE001 - never into the engine
            _log("warning", "journal: cannot record the end of %s: %s", gen, exc)


def item_key(client, prompt, src, refs, aspect_ratio, output_format, web_search):
    """(fingerprint, recorded request) of a work item; src and refs as Client._prepare gives them.

    The n-th item with a fingerprint on a client is its occurrence n (see
    _journal.py): a caller that knows the order of its items (the batch
    command) finds each one's row with this.
    """
    request = {
        "prompt": prompt,
        "source": input_key(src),
        "image_refs": [input_key(r) for r in refs],
        "aspect_ratio": aspect_ratio,
        "output_format": output_format,
        "web_search": bool(web_search),
    }
    return fingerprint({**request, "project_id": client.project_id}), request


def start_generation(
    journal,
    client,
    prompt,
    src,
    refs,
    aspect_ratio,
    output_format,
    web_search,
    *,
    download,
    overwrite,
    timeout,
):
    """See Journal.start_generation."""
    fp, request = item_key(client, prompt, src, refs, aspect_ratio, output_format, web_search)
    occurrence = journal.next_occurrence(fp)
    item = _Item(journal, fp, occurrence, download, [src, *refs], request)
    common = {"download": download, "timeout": timeout}
    try:
        # The row is this journal's to send, or has its job (see Journal.claim):
        # waits only while another live process is sending the same item.
        entry = journal.claim(fp, occurrence, request, timeout)
        source, image_refs, uploads = engine_inputs(src, refs)
        if entry is not None and entry.job_id:
            _log("debug", "journal: item %s#%d is %s; attaching", fp[:12], occurrence, entry.job_id)
            # The pipeline starts at the wait: the inputs are not read again.
            gen = client._start(
                prompt,
                None,
                (),
                aspect_ratio,
                output_format,
                web_search,
                job=client._attach(entry.job_id),
                overwrite=_overwrite_for(journal, entry.job_id, download, overwrite),
                **common,
            )
        else:
            sent_after = None
            if entry is not None and not _has_uploads(entry.request):
                # The process died between sending and recording the answer
                # (or the send failed in a way that proves nothing). The
                # engine looks for the job that POST created (the very asset
                # ids it sent: nothing to upload) before it sends anything.
                _log("debug", "journal: item %s#%d was being sent", fp[:12], occurrence)
                sent_after = entry.sent_at
                item.reconciling = True
                source = entry.request.get("source")
                image_refs = list(entry.request.get("image_refs", ()))
                uploads = []
            else:
                # A new item; or one whose inputs were being uploaded: the
                # asset ids its POST would have carried are unknown, so no
                # job can be matched to it (see _has_uploads).
                journal._begin_sending(fp, occurrence, request)  # committed before the pipeline
            try:
                gen = client._start(
                    prompt,
                    source,
                    image_refs,
                    aspect_ratio,
                    output_format,
                    web_search,
                    uploads=uploads,
                    overwrite=overwrite,
                    sent_after=sent_after,
                    exclude=journal.job_ids(),
                    on_submitted=item.submitted,
                    on_ready=item.ready,
                    **common,
                )
            except BaseException:
                if entry is None:
                    journal._forget(fp, occurrence)  # refused before anything was sent
                else:
                    journal._release(fp, occurrence)
                raise
    except BaseException:
        close_all([src, *refs])
        raise
    gen.add_done_callback(item.ended)
    return gen


def generation_ended(journal, item: _Item, gen) -> None:
    """See Journal._generation_ended."""
    job = gen.job
    error = gen.error
    if job is None:
        # Ended before a job was known: an upload failed, the POST was refused,
        # or the outcome is uncertain. Only a refusal of this pipeline's own
        # request proves nothing was created; anything else (and any end of
        # a reconciliation) leaves the row for a re-run to reconcile.
        if error is not None and not item.reconciling and _created_nothing(error):
            journal._forget(item.fp, item.occurrence, item.counts)
        else:
            journal._release(item.fp, item.occurrence)
        return
    # Attached or adopted rows already hold the job; a new one got it in
    # on_submitted. A row with another job is not this generation's to finish.
    entry = journal.entry(item.fp, item.occurrence)
    if entry is None or entry.job_id != job.id:
        return
    if error is None:
        if item.download is not None:
            _record_files(journal, job, gen.result(0))
        journal.mark_done(job.id)
    elif isinstance(error, (_core.JobFailedError, _core.JobCanceledError)):
        journal.set_state(job.id, FAILED)
    # Anything else (a download that failed, a deadline): the job is recorded,
    # and a re-run attaches to it and fetches what is missing.


def _record_files(journal, job, paths) -> None:
    ids = list(job.asset_ids)
    for i, path in enumerate(paths):
        full = os.path.abspath(os.fspath(path))
        stem = os.path.basename(full).partition(".")[0]
        asset_id = stem if stem in ids else ids[i] if i < len(ids) else stem
        digest, size = file_sha256(full)
        journal._record_download(job.id, asset_id, full, digest, size)


def _overwrite_for(journal, job_id: str, download, overwrite: bool) -> bool:
    """The overwrite flag for fetching a recorded job's files into download again.

    Every file at a target of the job's download is that job's asset: the
    journal recorded it (and it is intact), or the process died between
    writing it and recording it. Replacing those with the same bytes is
    safe, so the pipeline may overwrite, unless a recorded file there was
    changed since: then only the caller's overwrite=True replaces it.
    """
    if overwrite or download is None:
        return bool(overwrite)
    directory = os.path.abspath(os.fsdecode(os.fspath(download)))
    for path, digest, size in journal._read(
        "SELECT path, sha256, size FROM downloads WHERE job_id = ?", (job_id,)
    ):
        if os.path.dirname(path) != directory:
            continue
        try:
            if os.stat(path).st_size != size or file_sha256(path)[0] != digest:
                return False
        except FileNotFoundError:
            continue
    return True
