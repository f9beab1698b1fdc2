"""The submission journal behind Client(journal=...).

A generate request has no idempotency key: a POST that reached the server is a
paid job. The journal makes a batch safe to re-run after a process died
(SIGKILL, power cut, Ctrl-C) and safe to share between processes: finished
items are skipped, in-flight jobs are re-attached, missing files are fetched
again, and nothing is submitted twice.

Where it lives (the rules below are the same for both, in _claims.py):
- a file path: an SQLite database (_sqlite.py), shared by any number of
  processes and clients of one machine;
- a postgresql:// URL: tables in a PostgreSQL database (_postgres.py, psycopg
  3), one ledger for every worker of a cluster, on any number of machines.

What is recorded, and when:
- submissions: one row per work item, inserted and committed BEFORE the request
  is sent (state 'sending', with the time and its owner: the journal instance
  sending it), given the job id as soon as the answer arrives ('submitted'),
  'done' once every file of the job has been downloaded (or its images
  fetched by run() or a Generation), 'failed' once resume() or a Generation
  has seen the job end in failure or cancellation.
- downloads: each finished file (job id, asset id, absolute path) with its size
  and SHA-256.
Nothing secret is stored: no credentials, no URLs (signed CDN URLs are
capabilities), only prompts, asset ids, job ids, paths and hashes.

Work items. A generate() call is identified by (fingerprint, occurrence):
- fingerprint: SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8)
  of the request as it would be POSTed, with one refinement: an input that is
  uploaded (a path, bytes, a file object, a PIL image) stands as the SHA-256
  and MIME type of its bytes, not as the asset id of its upload, because every
  upload gets a new asset id and a re-run must map to the same row. The
  project id is part of it (the same prompt in another project is other work).
- occurrence: the n-th call with that fingerprint on this Client is occurrence
  n (1, 2, ...). The same prompt sent 4 times for 4 images is 4 items, and
  re-running the same script with the same journal maps each call to the same
  row again. A script whose calls change order between runs still maps
  identical requests to each other, which is all that matters: they are
  interchangeable. Processes count on their own: four workers each sending
  the same prompt once share one row, hence one job.

Claims (Journal.claim). Before an item is sent, its row is claimed in a
transaction that locks it: a new row is inserted as this journal's; a row
with a job is attached to (no upload, no POST), whichever process paid for
it; a row without a job whose owner is gone (a killed worker), released, or
this journal itself is taken over and reconciled (below); a row without a job
that a live process is sending is waited for until it gets its job or is let
go, never sent a second time. Whether an owner is alive is the store's
business: the process and its start time on one machine (SQLite), the
session holding an advisory lock (PostgreSQL). A send that ends without a
job and without proof that nothing was created lets go of its row, so that
the next attempt reconciles it at once.

Reconciling. A row taken over while still 'sending' means its sender died
between sending and recording the answer: the job list is searched for a job
with that input, created after the send (minus clock skew) and not owned by
another row (Client._find_job). Found: it is adopted. Not found: the POST
never created a job and it is sent again, but only once the POST, had it
reached the server, would have landed: a server finishes a request whose
client went away, so "not in the list yet" right after a crash proves
nothing. The wait is the client's request timeout (1 s to 120 s: the longest
the dead process would have waited for the answer) plus its settle window
(how long after a failed POST its job may still appear, see Client), polling
the list every second; only an attempt that follows the crash within that
time waits at all. After a failed send the row is deleted only when the
answer proves nothing was created (a validation error, HTTP 4xx other than
408/429); any other error keeps it for the next attempt to reconcile.

Client.submit and generate_many take the same decisions without blocking the
caller (start_generation, in _journal_engine.py): the item's pipeline runs on
the client's engine, which attaches to a recorded job, or reconciles a
'sending' row itself (the core's look and settle rules, given the row's send
time) before it would POST; the records are written from the engine thread.
The one wait of that path is the claim's: a row another live process is
sending holds submit() until it is resolved.

Jobs of other items are never adopted: every reconciliation, the core's own
after an uncertain POST included, is given the journal's job ids to exclude
(read back from the database as other processes record theirs), on top of
the claims the core shares between all clients of the process; and a job id
belongs to one row (UNIQUE).
"""

from ._claims import Journal, open_store
from ._records import (
    DONE,
    FAILED,
    FORMAT,
    SENDING,
    SUBMITTED,
    VERSION,
    Entry,
    _created_nothing,
    _has_uploads,
    canonical_json,
    file_sha256,
    fingerprint,
    input_key,
)

__all__ = [
    "DONE",
    "FAILED",
    "FORMAT",
    "SENDING",
    "SUBMITTED",
    "VERSION",
    "Entry",
    "Journal",
    "_created_nothing",
    "_has_uploads",
    "canonical_json",
    "file_sha256",
    "fingerprint",
    "input_key",
    "open_store",
]
