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
