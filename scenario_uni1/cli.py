"""The scenario-uni1 command (also python -m scenario_uni1).

    scenario-uni1 generate "a fantasy landscape" --aspect-ratio 16:9 -o renders/
    scenario-uni1 generate --offline "a cat"          # built-in emulator, no account
    scenario-uni1 generate "a cat" --journal cat.db   # run it again: no second job
    scenario-uni1 job JOB_ID --wait --download renders/
    scenario-uni1 upload picture.png
    scenario-uni1 estimate "a cat" --ref picture.png
    scenario-uni1 emulator --port 8080
    scenario-uni1 batch prompts.txt -o renders/       # see scenario-uni1 batch --help

Exit status: 0 success, 1 API or network error, 2 usage or invalid input,
3 the job failed or was canceled, 130 interrupted (Ctrl-C). batch has its own
(scenario_uni1/_batch.py).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

EXIT_OK = 0
EXIT_API = 1
EXIT_USAGE = 2
EXIT_JOB = 3
EXIT_INTERRUPTED = 130


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C with the one line main() prints for it (instead of plain "interrupted")."""


class _CommandError(Exception):
    def __init__(self, message: str, code: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


# -- parser -------------------------------------------------------------------------


def _add_connection_options(parser: argparse.ArgumentParser, default) -> None:
    # Accepted before or after the subcommand; SUPPRESS in the subcommands
    # keeps a value given before the subcommand from being reset.
    parser.add_argument(
        "--base-url",
        default=default,
        metavar="URL",
        help="API root, e.g. http://127.0.0.1:8080/v1 (default: $SCENARIO_BASE_URL or the live API)",
    )
    parser.add_argument(
        "--project-id", default=default, metavar="ID", help="send ?projectId=ID on every request"
    )


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prompt", help="what to generate (1 to 6000 characters)")
    parser.add_argument(
        "--aspect-ratio",
        metavar="W:H",
        help="1:3, 9:16, 2:3, 3:4, 1:1, 4:3, 3:2, 16:9 or 3:1 (default 3:2; an edit keeps "
        "the source's ratio)",
    )
    parser.add_argument(
        "--format", dest="output_format", choices=("png", "jpeg"), default="png", help="default png"
    )
    parser.add_argument(
        "--source", metavar="IMAGE", help="image to edit: a file or an asset id (edit mode)"
    )
    parser.add_argument(
        "--ref",
        dest="refs",
        action="append",
        default=[],
        metavar="IMAGE",
        help="reference image, a file or an asset id; repeat for more (at most 9, 8 with --source)",
    )
    parser.add_argument("--web-search", action="store_true", help="let the model search the web")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="run against the built-in emulator in this process (no account, no cost)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files of the same name (default: refuse, and keep them)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scenario-uni1",
        description="Generate images with Scenario's Luma Uni-1 Max model.",
        epilog="Credentials: SCENARIO_SDK_API_KEY and SCENARIO_SDK_API_SECRET (or SCENARIO_SDK_JWT).",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_connection_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    gen = sub.add_parser("generate", help="generate an image and download it")
    _add_generation_options(gen)
    gen.add_argument(
        "-o",
        "--output",
        default=".",
        metavar="DIR",
        help="directory for the images (created if missing; default .)",
    )
    gen.add_argument("--no-wait", action="store_true", help="print the job id and exit")
    _add_overwrite_option(gen)
    gen.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    gen.add_argument(
        "--journal",
        metavar="PATH",
        help="record the submission and the download in this journal (SQLite, created if "
        "missing): running the same command again re-attaches to the job instead of paying "
        "for a new one, and skips files already downloaded",
    )
    _add_connection_options(gen, argparse.SUPPRESS)

    est = sub.add_parser("estimate", help="the cost in creative units, without running")
    _add_generation_options(est)
    _add_connection_options(est, argparse.SUPPRESS)

    job = sub.add_parser("job", help="show a job; optionally wait for it and download")
    job.add_argument("job_id", metavar="JOB_ID")
    job.add_argument("--wait", action="store_true", help="wait until the job ends")
    job.add_argument("--download", metavar="DIR", help="wait, then download the images into DIR")
    _add_overwrite_option(job)
    job.add_argument("--timeout", type=float, metavar="SECONDS", help="give up after this long")
    job.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    job.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    _add_connection_options(job, argparse.SUPPRESS)

    up = sub.add_parser("upload", help="upload an image; prints its asset id")
    up.add_argument("file", metavar="FILE")
    up.add_argument(
        "--offline", action="store_true", help="upload to the built-in emulator (for trying out)"
    )
    up.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    _add_connection_options(up, argparse.SUPPRESS)

    emu = sub.add_parser("emulator", help="run the local Scenario API emulator")
    emu.add_argument("--port", type=int, default=8080, help="default 8080 (0: any free port)")
    emu.add_argument(
        "--job-duration", type=float, default=2.0, metavar="SECONDS", help="server time per job"
    )
    emu.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="the same job and asset ids (and images) on every start (default: random ids)",
    )

    from ._batch import add_parser

    add_parser(sub, _add_connection_options)

    return parser


# -- helpers --------------------------------------------------------------------------


def _print_json(data) -> None:
    import json

    print(json.dumps(data, indent=2, sort_keys=True))


def _format_units(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:g}"


class _Session:
    """The client for one command: a real one, or an in-process emulator's."""

    def __init__(self, args) -> None:
        self._emulator = None
        self.client = None
        journal = getattr(args, "journal", None)
        if journal is not None and getattr(args, "offline", False):
            # The in-process emulator dies with the command: its jobs cannot
            # be re-attached by the next run.
            raise _CommandError("--journal cannot be used with --offline", EXIT_USAGE)
        if getattr(args, "offline", False):
            from .emulator import Emulator

            self._emulator = Emulator()
            self._emulator.start()
            try:
                self.client = self._emulator.client()
            except BaseException:
                self._emulator.stop()
                raise
        else:
            from ._client import Client

            self.client = Client(
                base_url=args.base_url, project_id=args.project_id, journal=journal
            )

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self._emulator is not None:
                self._emulator.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _deadline(timeout: float | None):
    """The --timeout as the _core.Deadline that every step of the command shares."""
    if timeout is not None and (math.isnan(timeout) or timeout < 0):
        raise _CommandError("--timeout must be a number of seconds >= 0", EXIT_USAGE)
    from . import _core

    return _core.Deadline(timeout)


def _wait(job, deadline, quiet: bool) -> None:
    if quiet:
        job.wait(deadline, progress=False)
        return
    from ._progress import ProgressPrinter

    printer = ProgressPrinter()
    try:
        job.wait(deadline, progress=printer)
    finally:
        printer.close()


def _job_summary(job, files=()) -> dict:
    return {
        "job_id": job.id,
        "status": job.status,
        "progress": job.progress,
        "cost": job.cost,
        "asset_ids": list(job.asset_ids),
        "error": job.error,
        "hint": job.hint,
        "files": [str(f) for f in files],
    }


def _generation_kwargs(args) -> dict:
    return {
        "source": args.source,
        "image_refs": list(args.refs),
        "aspect_ratio": args.aspect_ratio,
        "output_format": args.output_format,
        "web_search": args.web_search,
    }


# -- commands ---------------------------------------------------------------------------


def _cmd_generate(args) -> int:
    from . import _core

    deadline = _deadline(args.timeout)
    with _Session(args) as session:
        job = session.client.generate(args.prompt, **_generation_kwargs(args))
        if args.no_wait:
            if args.json:
                _print_json(_job_summary(job))
            else:
                print(job.id)
            return EXIT_OK
        try:
            _wait(job, deadline, args.quiet)
        except KeyboardInterrupt:
            if args.offline:
                raise
            raise _Interrupted(
                f"interrupted; the job goes on on the server: scenario-uni1 job {job.id} "
                "--download DIR"
            ) from None
        except _core.JobError:
            if args.json:
                _print_json(_job_summary(job))
            raise
        os.makedirs(args.output, exist_ok=True)
        try:
            paths = job.download(args.output, overwrite=args.overwrite, timeout=deadline)
        except FileExistsError as exc:
            if args.offline:
                raise
            # The job is paid for: say how to fetch its images once the name is free.
            raise _CommandError(
                _exists_message(exc),
                EXIT_API,
                hint=f"the job is done; its images: scenario-uni1 job {job.id} --download DIR",
            ) from None
        if args.json:
            _print_json(_job_summary(job, paths))
        else:
            for path in paths:
                print(path)
    return EXIT_OK


def _cmd_estimate(args) -> int:
    with _Session(args) as session:
        cost = session.client.estimate(args.prompt, **_generation_kwargs(args))
    if args.json:
        _print_json({"creative_units": cost})
    else:
        print(_format_units(cost))
    return EXIT_OK


def _cmd_job(args) -> int:
    from . import _core

    deadline = _deadline(args.timeout)
    with _Session(args) as session:
        job = session.client.job(args.job_id)
        paths = []
        if args.wait or args.download:
            try:
                _wait(job, deadline, args.quiet or args.json)
            except _core.JobError:
                if args.json:
                    _print_json(_job_summary(job))
                raise
        if args.download:
            os.makedirs(args.download, exist_ok=True)
            paths = job.download(args.download, overwrite=args.overwrite, timeout=deadline)
        if args.json:
            _print_json(_job_summary(job, paths))
            return EXIT_OK
        print(f"job       {job.id}")
        print(f"status    {job.status}")
        print(f"progress  {round((job.progress or 0.0) * 100)}%")
        if job.asset_ids:
            print(f"assets    {' '.join(job.asset_ids)}")
        if job.error:
            print(f"error     {job.error}")
        if job.hint:
            print(f"hint      {job.hint}")
        for path in paths:
            print(path)
    return EXIT_OK


def _cmd_upload(args) -> int:
    with _Session(args) as session:
        asset_id = session.client.upload(args.file)
    if args.json:
        _print_json({"asset_id": asset_id})
    else:
        print(asset_id)
    return EXIT_OK


def _cmd_batch(args) -> int:
    from ._batch import InputError, run

    try:
        return run(args, args._argv)
    except InputError as exc:
        for n, message in exc.problems:
            where = f"{args.input}:{n}: " if n else f"{args.input}: "
            sys.stderr.write(f"error: {where}{message}\n")
        sys.stderr.write("error: nothing was submitted\n")
        return EXIT_USAGE


def _cmd_emulator(args) -> int:
    from .emulator import serve

    serve(port=args.port, job_duration=args.job_duration, seed=args.seed)
    return EXIT_OK


_COMMANDS = {
    "generate": _cmd_generate,
    "estimate": _cmd_estimate,
    "job": _cmd_job,
    "upload": _cmd_upload,
    "emulator": _cmd_emulator,
    "batch": _cmd_batch,
}


# -- entry point ------------------------------------------------------------------------


def _classify(exc: Exception) -> tuple[int, str, str | None]:
    """(exit status, message, hint) for an expected error."""
    from . import _core

    if isinstance(exc, _CommandError):
        return exc.code, str(exc), exc.hint
    if isinstance(exc, _core.JobError):
        job = getattr(exc, "job", None)
        job_id = getattr(job, "id", None)
        what = "was canceled" if isinstance(exc, _core.JobCanceledError) else "failed"
        detail = exc.error or str(exc)
        message = f"job {job_id} {what}: {detail}" if job_id else f"the job {what}: {detail}"
        return EXIT_JOB, message, exc.hint
    if isinstance(exc, (_core.InvalidRequestError, _core.ConfigurationError)):
        return EXIT_USAGE, str(exc), None
    if isinstance(exc, FileExistsError):
        return EXIT_API, _exists_message(exc), None
    return EXIT_API, str(exc), None


def _exists_message(exc: FileExistsError) -> str:
    # The library's message tells a Python caller to pass overwrite=True; a
    # command line user needs the flag, so the message is worded here.
    if exc.filename:
        path = os.fsdecode(exc.filename)
    else:
        text = exc.strerror or str(exc)
        path, sep, _ = text.rpartition(" exists")
        if not (sep and path):
            path = "a file"
    return f"{path} exists (pass --overwrite to replace it)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # batch prints it to resume
    # After parsing: --help and usage errors never load the extension.
    from . import _core

    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt as exc:
        message = str(exc) if isinstance(exc, _Interrupted) else "interrupted"
        sys.stderr.write(message + "\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (| head): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except (_core.Uni1Error, _CommandError, OSError) as exc:
        code, message, hint = _classify(exc)
        sys.stderr.write(f"error: {message}\n")
        if hint:
            sys.stderr.write(f"hint: {hint}\n")
        return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
