"""scenario-uni1 batch: many generations from a file, journaled, with a manifest.

The run is generate_many on a client with a journal (DIR/.scenario-uni1/
journal.sqlite unless --journal): every item goes through it in input order,
so the journal maps the n-th identical request of the input to the same row
on every run (see _journal.py). An item whose job exists is re-attached (no
POST) and its files are fetched again if missing; a 'sending' row is
reconciled; only new items are submitted. Nothing of the batch's bookkeeping
lives outside the journal: the manifest is rewritten from each run's results.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import sys

# What an input item may set: submit()'s arguments less those the batch owns
# (download is -o DIR; overwrite and the deadline are the journal's business).
ITEM_KEYS = ("prompt", "source", "image_refs", "aspect_ratio", "output_format", "web_search")
FORMATS = ("text", "jsonl", "csv")
_EXTENSIONS = {".txt": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_TRUE = ("1", "true", "yes", "y")
_FALSE = ("0", "false", "no", "n")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 4
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Generate one image set per input item, into DIR, journaled: run the same command
again after a crash, a Ctrl-C or a failure and it finishes only what is missing,
paying for nothing twice.

INPUT (a file, or - for stdin) is one of:
  text   one prompt a line (blank lines are skipped)
  jsonl  one JSON object a line, with keys among
           %(keys)s
         (source and image_refs: asset ids, or paths relative to the file)
  csv    a header naming those keys, then one item a row; image_refs holds
         several paths or ids separated by ';' (or a JSON array)
The format comes from the extension (.txt, .jsonl/.ndjson, .csv); otherwise (and
for stdin) from the content: a first line starting with '{' is JSONL, a first
line naming only known keys (prompt among them) is a CSV header, anything else
is text. --input-format overrides it.

Every line is checked before anything is sent (a malformed line, an unknown
key, a bad value, a missing file): each bad line is named and nothing is paid.

Written: DIR/<asset id>.<ext> per image, and DIR/manifest.jsonl, one object per
item (line, request, job_id, status, files with sha256, cost, error, hint),
rewritten by every run.

Exit status: 0 every item succeeded; 1 an item failed (see the manifest; rerun,
or --retry-failed to pay for a new attempt), or an API or network error stopped
the run; 2 usage or invalid input (nothing sent); 4 --max-cost left items
unsubmitted; 130 interrupted (the command to resume is printed).
""" % {"keys": ", ".join(ITEM_KEYS)}


class InputError(Exception):
    """Bad input: every problem found, each as (line, message)."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"line {n}: {m}" for n, m in problems))
        self.problems = problems


# -- the parser ------------------------------------------------------------------------


def add_parser(sub, add_connection_options) -> None:
    p = sub.add_parser(
        "batch",
        help="generate every item of a file (text, JSONL, CSV), journaled",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="the items: a file, or - for stdin")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="directory for the images and manifest"
    )
    p.add_argument(
        "--input-format", choices=FORMATS, help="the INPUT format (default: detected, see above)"
    )
    p.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="items in flight (default 16)"
    )
    p.add_argument(
        "--journal",
        metavar="PATH",
        help="the journal: a file (default DIR/.scenario-uni1/journal.sqlite) or a "
        "postgresql:// URL; keep it to resume",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit the items whose job failed again (a new, paid job each); without it a "
        "failed item stays failed",
    )
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print the total cost in creative units (dry runs) and submit nothing",
    )
    p.add_argument(
        "--max-cost",
        type=float,
        metavar="CU",
        help="budget in creative units for the whole batch, earlier runs' items included: "
        "an item is submitted only if the estimates (costs, once known) stay within it; "
        "the rest are reported as not submitted",
    )
    p.add_argument("--json", action="store_true", help="one JSON summary on stdout; no progress")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="per HTTP request (default 60); a re-run after a crash waits at most this plus "
        "--settle-window for a submission that was in flight to show up",
    )
    p.add_argument(
        "--settle-window",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long a submission whose answer was lost may take to appear (default 20)",
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="run against the built-in emulator (no account, no cost; nothing to resume)",
    )
    add_connection_options(p, argparse.SUPPRESS)


# -- reading the input ------------------------------------------------------------------


def detect_format(name: str, text: str) -> str:
    ext = os.path.splitext(name)[1].lower() if name != "-" else ""
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    try:
        header = next(csv.reader([first]))
    except (csv.Error, StopIteration):
        return "text"
    names = [h.strip() for h in header]
    if "prompt" in names and all(h in ITEM_KEYS for h in names):
        return "csv"
    return "text"


def _resolve_path(value, base: str):
    """An asset id as is; a path relative to base (the input file's directory)."""
    from ._inputs import is_asset_id

    if not isinstance(value, str) or os.path.isabs(value):
        return value
    joined = os.path.join(base, value)
    if is_asset_id(value) and not os.path.isfile(joined):
        return value
    return joined


def _item(raw: dict, base: str) -> dict:
    """An input object as submit() arguments: known keys only, paths made absolute-ish."""
    unknown = sorted(str(k) for k in raw if k not in ITEM_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(ITEM_KEYS)})")
    if "prompt" not in raw:
        raise ValueError("no prompt")
    item = dict(raw)
    if item.get("source") is not None:
        item["source"] = _resolve_path(item["source"], base)
    refs = item.get("image_refs")
    if isinstance(refs, list):
        item["image_refs"] = [_resolve_path(r, base) for r in refs]
    elif refs is not None:
        raise ValueError(f"image_refs must be a list, not {type(refs).__name__}")
    return item


def _csv_value(key: str, cell: str):
    cell = cell.strip()
    if key == "web_search":
        if cell.lower() in _TRUE:
            return True
        if cell.lower() in _FALSE:
            return False
        raise ValueError(f"web_search must be true or false, not {cell!r}")
    if key == "image_refs":
        if cell.startswith("["):
            try:
                value = json.loads(cell)
            except ValueError as exc:
                raise ValueError(f"image_refs is not a JSON array: {exc}") from None
            return value
        return [part.strip() for part in cell.split(";") if part.strip()]
    return cell


def parse(text: str, fmt: str, base: str) -> list[tuple[int, dict]]:
    """[(line number, submit() arguments)] of every item; InputError naming each bad line."""
    items: list[tuple[int, dict]] = []
    problems: list[tuple[int, str]] = []
    if fmt == "text":
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                items.append((n, {"prompt": line.strip()}))
    elif fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append((n, f"not valid JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(raw, dict):
                problems.append((n, f"expected a JSON object, not {type(raw).__name__}"))
                continue
            try:
                items.append((n, _item(raw, base)))
            except ValueError as exc:
                problems.append((n, str(exc)))
    else:
        reader = csv.reader(io.StringIO(text))
        header: list[str] | None = None
        start = 1
        try:
            for row in reader:
                n, start = start, reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [h.strip() for h in row]
                    unknown = sorted({h for h in header if h not in ITEM_KEYS})
                    if unknown or "prompt" not in header:
                        what = f"unknown column(s) {', '.join(unknown)}" if unknown else "no prompt"
                        raise InputError(
                            [(n, f"CSV header: {what} (columns: {', '.join(ITEM_KEYS)})")]
                        )
                    continue
                if len(row) != len(header):
                    problems.append((n, f"{len(row)} fields, the header has {len(header)}"))
                    continue
                try:
                    raw = {k: _csv_value(k, v) for k, v in zip(header, row) if v.strip()}
                    items.append((n, _item(raw, base)))
                except ValueError as exc:
                    problems.append((n, str(exc)))
        except csv.Error as exc:
            problems.append((start, f"malformed CSV: {exc}"))
    if problems:
        raise InputError(problems)
    if not items:
        raise InputError([(0, "no items in the input")])
    return items


_DEFAULTS = {
    "source": None,
    "image_refs": (),
    "aspect_ratio": None,
    "output_format": "png",
    "web_search": False,
}


def check(client, items: list[tuple[int, dict]], keys: list | None = None) -> None:
    """Every item's arguments and files checked (nothing sent); InputError naming each bad one.

    keys: when a list, gets each item's journal fingerprint (see item_key).
    """
    from . import _core
    from ._inputs import close_all
    from ._journal_engine import item_key

    problems = []
    for n, item in items:
        args = [{**_DEFAULTS, **item}[k] for k in ITEM_KEYS]
        try:
            src, refs = client._prepare(*args)
        except (_core.InvalidRequestError, OSError) as exc:
            problems.append((n, str(exc)))
            continue
        try:
            if keys is not None:
                prompt, _, _, aspect_ratio, output_format, web_search = args
                fp, _ = item_key(client, prompt, src, refs, aspect_ratio, output_format, web_search)
                keys.append(fp)
        finally:
            close_all([src, *refs])
    if problems:
        raise InputError(problems)


# -- running ---------------------------------------------------------------------------


def _read_input(name: str) -> tuple[str, bytes]:
    """(text, raw bytes) of INPUT; InputError when unreadable or not UTF-8."""
    try:
        if name == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as f:
                raw = f.read()
    except OSError as exc:
        raise InputError([(0, f"cannot read {name}: {exc.strerror}")]) from None
    try:
        return raw.decode("utf-8-sig"), raw
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError([(line, "not UTF-8 text")]) from None


class _Run:
    """One batch command: its clients, its items, their outcomes."""

    def __init__(self, args, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.out = os.path.abspath(args.output)
        self.emulator = None

    # clients

    def client(self, journal=None):
        args = self.args
        kw = {"timeout": args.request_timeout, "settle_window": args.settle_window}
        if journal is not None:
            kw["journal"] = journal
        if args.offline:
            if self.emulator is None:
                from .emulator import Emulator

                self.emulator = Emulator()
                self.emulator.start()
            return self.emulator.client(**kw)
        from ._client import Client

        return Client(base_url=args.base_url, project_id=args.project_id, **kw)

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    # the resume line

    def resume_command(self, saved_stdin: str | None) -> str:
        from ._journal._postgres import redact

        # A database URL's password is not printed (libpq finds it in
        # PGPASSWORD or ~/.pgpass for the resumed run).
        argv = []
        for arg in self.argv:
            head, sep, url = arg.partition("=") if arg.startswith("--journal=") else ("", "", arg)
            if url.startswith(("postgresql://", "postgres://")):
                arg = head + sep + redact(url)
            argv.append(arg)
        line = "scenario-uni1 " + shlex.join(argv)
        if saved_stdin is not None:
            line += " < " + shlex.quote(saved_stdin)
        return line


def run(args, argv: list[str]) -> int:
    from . import _core

    if args.concurrency < 1:
        raise _core.InvalidRequestError("--concurrency must be at least 1")
    if args.max_cost is not None and not args.max_cost >= 0:
        raise _core.InvalidRequestError("--max-cost must be a number of creative units >= 0")
    if args.offline and args.journal is not None:
        raise _core.InvalidRequestError(
            "--journal cannot be used with --offline (the built-in emulator, and its jobs, "
            "end with the command)"
        )
    text, raw = _read_input(args.input)
    fmt = args.input_format or detect_format(args.input, text)
    base = os.getcwd() if args.input == "-" else os.path.dirname(os.path.abspath(args.input))
    items = parse(text, fmt, base)
    batch = _Run(args, argv)
    try:
        with batch.client() as client:  # no journal: checking and quoting create nothing
            keys: list | None = [] if args.retry_failed else None
            check(client, items, keys)
            if args.estimate:
                return _estimate(client, items, args)
        return _execute(batch, items, keys, raw if args.input == "-" else None, fmt)
    finally:
        batch.close()


def _estimate(client, items, args) -> int:
    from ._many import quote_for

    cache: dict = {}
    total = sum(quote_for(client, item, cache) for _, item in items)
    if args.json:
        print(json.dumps({"items": len(items), "creative_units": total}))
    else:
        print(f"{len(items)} items: {total:g} creative units (estimate; nothing submitted)")
    return EXIT_OK


def _execute(batch: _Run, items, keys, stdin_raw: bytes | None, fmt: str) -> int:
    import tempfile

    args = batch.args
    os.makedirs(batch.out, exist_ok=True)
    state_dir = os.path.join(batch.out, ".scenario-uni1")
    saved_stdin = None
    tmp = None
    if args.offline:
        tmp = tempfile.TemporaryDirectory(prefix="scenario-uni1-batch-")
        journal = os.path.join(tmp.name, "journal.sqlite")
    else:
        journal = args.journal or os.path.join(state_dir, "journal.sqlite")
        if "://" not in journal:  # a file, not a database server's URL
            os.makedirs(os.path.dirname(os.path.abspath(journal)), exist_ok=True)
        if stdin_raw is not None:
            # The resume command feeds the same items again.
            saved_stdin = os.path.join(state_dir, f"stdin.{'txt' if fmt == 'text' else fmt}")
            os.makedirs(state_dir, exist_ok=True)
            _write_atomically(saved_stdin, stdin_raw)
    try:
        with batch.client(journal=journal) as client:
            return _generate(batch, client, items, keys, saved_stdin)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _generate(batch: _Run, client, items, keys, saved_stdin) -> int:
    from ._many import BudgetExceededError

    args = batch.args
    journal = client._journal
    if keys is not None:
        _free_failed(journal, keys)
    known_jobs = set(journal.job_ids())
    requests = [dict(item) for _, item in items]
    index = {id(r): i for i, r in enumerate(requests)}
    results: list = [None] * len(items)
    many = client.generate_many(
        requests,
        concurrency=args.concurrency,
        download=batch.out,
        progress=not (args.json or args.quiet),
        max_cost=args.max_cost,
    )
    stop = _Stop(many)
    with stop:
        try:
            for gen in many:
                results[index[id(gen.request)]] = gen
        except KeyboardInterrupt:
            stop.count += 1  # the second Ctrl-C (or the first, off the main thread)
    interrupted = stop.count
    records = [
        _record(n, item, gen, journal, batch.out, BudgetExceededError)
        for (n, item), gen in zip(items, results)
    ]
    manifest = os.path.join(batch.out, "manifest.jsonl")
    _write_atomically(
        manifest,
        b"".join(
            json.dumps(r, ensure_ascii=False, sort_keys=True).encode() + b"\n" for r in records
        ),
    )
    summary = _summary(records, known_jobs, manifest, journal.path)
    if interrupted:
        code = EXIT_INTERRUPTED
    elif summary["failed"]:
        code = EXIT_FAILED
    elif summary["not_submitted"] or summary["pending"]:
        code = EXIT_BUDGET if summary["not_submitted"] else EXIT_FAILED
    else:
        code = EXIT_OK
    summary["exit_code"] = code
    if interrupted and not args.offline:
        summary["resume"] = batch.resume_command(saved_stdin)
    _report(summary, records, args)
    return code


class _Stop:
    """Ctrl-C during the run. The first stops submitting and lets what is in
    flight land; the second leaves at once (what was in flight is journaled).

    The first is taken by a signal handler that raises nothing: a
    KeyboardInterrupt raised between two statements of generate_many could
    leave a started item untracked, paid for and never waited on. The wait
    goes on, seeing that nothing more is to be submitted.
    """

    def __init__(self, many) -> None:
        self.many = many
        self.count = 0
        self._old = None

    def _handler(self, signum, frame) -> None:
        self.count += 1
        if self.count > 1:
            raise KeyboardInterrupt
        self.many.close()  # nothing more is submitted
        in_flight = len(self.many._inflight)
        if in_flight:
            sys.stderr.write(
                f"\nstopping: {in_flight} in flight will land (Ctrl-C again to leave them "
                "to the next run)\n"
            )

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _free_failed(journal, keys: list) -> None:
    """--retry-failed: each failed item's row is set aside, so this run submits it anew."""
    seen: dict[str, int] = {}
    for fp in keys:
        seen[fp] = occurrence = seen.get(fp, 0) + 1
        entry = journal.entry(fp, occurrence)
        if entry is not None and entry.state == "failed":
            journal.retry_failed(fp, occurrence)


def _record(n: int, item: dict, gen, journal, out: str, budget_error) -> dict:
    """The manifest object of one item."""
    from . import _core
    from ._journal import file_sha256
    from ._many import job_cost

    rec: dict = {
        "line": n,
        "request": item,
        "job_id": None,
        "status": "pending",
        "files": [],
        "cost": None,
        "error": None,
        "hint": None,
    }
    if gen is None:
        return rec  # never started (interrupted)
    job = gen.job
    error = gen.error
    if job is not None:
        rec["job_id"] = job.id
        rec["cost"] = job_cost(job)
    if error is None:
        rec["status"] = "done"
        ids = set(job.asset_ids) if job is not None else set()
        for path in gen.result(0):
            full = os.path.abspath(os.fspath(path))
            stem = os.path.basename(full).partition(".")[0]
            found = journal.download_record(job.id, stem, full) if stem in ids else None
            digest, size = found if found is not None else file_sha256(full)
            rec["files"].append(
                {"path": os.path.relpath(full, out), "sha256": digest, "size": size}
            )
        return rec
    if isinstance(error, budget_error):
        rec["status"] = "not_submitted"
    elif isinstance(error, _core.JobError):
        rec["status"] = "failed"
        rec["error"] = error.error or str(error)
        rec["hint"] = error.hint
        return rec
    else:
        rec["status"] = "failed"
    rec["error"] = str(error)
    rec["hint"] = getattr(error, "hint", None)
    return rec


def _summary(records, known_jobs: set, manifest: str, journal_path: str) -> dict:
    count = {s: 0 for s in ("done", "failed", "not_submitted", "pending")}
    cost = new_cost = 0.0
    for r in records:
        count[r["status"]] += 1
        if r["cost"] is not None:
            cost += r["cost"]
            if r["job_id"] not in known_jobs:
                new_cost += r["cost"]
    return {
        "items": len(records),
        **count,
        "creative_units": cost,
        "creative_units_this_run": new_cost,
        "manifest": manifest,
        "journal": journal_path,
    }


def _report(summary: dict, records, args) -> None:
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return
    for r in records:
        if r["status"] == "failed":
            hint = f" (hint: {r['hint']})" if r["hint"] else ""
            sys.stderr.write(f"line {r['line']}: failed: {r['error']}{hint}\n")
    parts = [f"{summary['done']} done", f"{summary['failed']} failed"]
    if summary["not_submitted"]:
        parts.append(f"{summary['not_submitted']} not submitted (budget)")
    if summary["pending"]:
        parts.append(f"{summary['pending']} pending")
    print(
        f"batch: {', '.join(parts)} of {summary['items']}; "
        f"{summary['creative_units']:g} creative units spent "
        f"({summary['creative_units_this_run']:g} by this run); {summary['manifest']}"
    )
    if "resume" in summary:
        sys.stderr.write(f"interrupted; to finish the batch: {summary['resume']}\n")
    elif summary["failed"] and not args.offline:
        sys.stderr.write(
            "the same command again finishes what a network or download error stopped; "
            "add --retry-failed to pay for a new attempt of the items whose job failed\n"
        )


def _write_atomically(path: str, data: bytes) -> None:
    """path holds data or its old content, never a part: a synced temporary file renamed."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
