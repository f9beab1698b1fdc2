"""The progress line shown by Job.wait(progress=True) and the command line tool."""

import sys
import time


class ProgressPrinter:
    """Called with the job after every poll.

    On a terminal: one line on stderr, rewritten in place with a carriage
    return (job id, status, percent, elapsed time), ended with a newline when
    the job is done or close() is called. Elsewhere (a log file, CI): one line
    per status change, so logs are not flooded.

    It never stops the wait it reports on: with no stderr at all (pythonw,
    some services) it shows nothing, and the first write that raises (a closed
    file, a broken pipe, a binary stream) turns it off for good.
    """

    def __init__(self, stream=None, *, label: str | None = None) -> None:
        self._stream = stream
        self._label = label
        self._start = time.monotonic()
        self._last_status: str | None = None
        self._width = 0  # length of the line on screen, to blank leftovers
        self._open = False  # a \r line is on screen without its newline
        self._closed = False
        self._tty: bool | None = None

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr

    def _is_tty(self) -> bool:
        if self._tty is None:
            try:
                self._tty = bool(self.stream.isatty())
            except Exception:
                self._tty = False
        return self._tty

    def format(self, job) -> str:
        elapsed = time.monotonic() - self._start
        status = job.status
        percent = round(max(0.0, min(1.0, job.progress or 0.0)) * 100)
        if status == "success":
            percent = 100
        label = self._label or job.id
        return f"{label}  {status:<11} {percent:3d}%  {elapsed:6.1f}s"

    def __call__(self, job) -> None:
        if self._closed:
            return
        stream = self.stream
        if stream is None:
            return
        try:
            line = self.format(job)
            if self._is_tty():
                pad = " " * max(0, self._width - len(line))
                stream.write("\r" + line + pad)
                self._width = len(line)
                self._open = True
            elif job.status != self._last_status:
                stream.write(line + "\n")
            self._last_status = job.status
            stream.flush()
        except Exception:
            # Whatever a stream raises is the display's problem, not the wait's.
            self._closed = True
            return
        if job.done:
            self.close()

    def close(self) -> None:
        """End the line (on a terminal); later calls print nothing."""
        if self._closed:
            return
        self._closed = True
        if self._open:
            self._open = False
            try:
                self.stream.write("\n")
                self.stream.flush()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NoProgress:
    def update(self, gen, in_flight: "int | None" = None) -> None:
        pass

    def close(self) -> None:
        pass


class BatchProgress:
    """generate_many's plain progress line: done/total, failures, in flight,
    rate and time left.

    On a terminal one line on stderr rewritten in place; elsewhere a line
    every tenth of the batch (or every 50 items when the total is unknown)
    and at the end. Like ProgressPrinter, a stream that raises turns it off.
    """

    def __init__(self, total: "int | None", stream=None, label: str = "generate_many") -> None:
        self._printer = ProgressPrinter(stream)
        self._total = total
        self._label = label
        self._done = 0
        self._failed = 0
        self._in_flight: int | None = None
        step = max(1, total // 10) if total else 50
        self._step = step

    def format(self) -> str:
        elapsed = time.monotonic() - self._printer._start
        total = f"/{self._total}" if self._total is not None else ""
        failed = f", {self._failed} failed" if self._failed else ""
        flight = f", {self._in_flight} in flight" if self._in_flight else ""
        rate = self._done / elapsed if elapsed > 0 else 0.0
        left = ""
        if self._total is not None and rate > 0 and self._done < self._total:
            left = f"  ~{(self._total - self._done) / rate:.0f}s left"
        return (
            f"{self._label}  {self._done}{total} done{failed}{flight}  "
            f"{rate:.1f}/s  {elapsed:6.1f}s{left}"
        )

    def update(self, gen, in_flight: "int | None" = None) -> None:
        self._done += 1
        self._in_flight = in_flight
        if gen.error is not None:
            self._failed += 1
        printer = self._printer
        if printer._closed or printer.stream is None:
            return
        try:
            line = self.format()
            if printer._is_tty():
                pad = " " * max(0, printer._width - len(line))
                printer.stream.write("\r" + line + pad)
                printer._width = len(line)
                printer._open = True
            elif self._done % self._step == 0 or self._done == self._total:
                printer.stream.write(line + "\n")
            printer.stream.flush()
        except Exception:
            printer._closed = True

    def close(self) -> None:
        self._printer.close()


class _TqdmProgress:
    def __init__(self, bar) -> None:
        self._bar = bar
        self._failed = 0

    def update(self, gen, in_flight: "int | None" = None) -> None:
        if gen.error is not None:
            self._failed += 1
        # tqdm shows the rate and the time left itself.
        self._bar.set_postfix(failed=self._failed, in_flight=in_flight or 0, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def batch_progress(progress, total: "int | None", label: str = "generate_many"):
    """What generate_many reports to: progress=True gives a tqdm bar when tqdm
    is installed (tqdm.auto's widget in a notebook), else the plain line;
    False or None nothing. Anything else is an InvalidRequestError."""
    if progress is None or progress is False:
        return _NoProgress()
    if progress is not True:
        from . import _core

        raise _core.InvalidRequestTypeError(
            f"progress must be True, False or None, not {type(progress).__name__}"
        )
    try:
        if "ipykernel" in sys.modules:
            from tqdm.auto import tqdm  # type: ignore[import]
        else:
            from tqdm import tqdm  # type: ignore[import]
    except ImportError:
        return BatchProgress(total, label=label)
    return _TqdmProgress(tqdm(total=total, unit="job", desc=label))
