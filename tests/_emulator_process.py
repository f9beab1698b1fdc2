"""An emulator in its own process, for measurements of the client alone.

The in-process emulator (the usual fixture) is Python serving every request
on a thread of the test process: it competes for the GIL with whatever is
measured. Timing tests run the client against this one instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from conftest import PACKAGE_PARENT

import scenario_uni1 as uni1


class EmulatorProcess:
    def __init__(self, url: str, api_key: str, api_secret: str) -> None:
        self.url = url
        self.api_key = api_key
        self.api_secret = api_secret

    def client(self, **kw) -> uni1.Client:
        return uni1.Client(self.api_key, self.api_secret, base_url=self.url, **kw)


@contextlib.contextmanager
def emulator_process(*args: str):
    """`python -m scenario_uni1.emulator --port 0 *args`, stopped on exit."""
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenario_uni1.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        found: dict[str, str] = {}
        while "SCENARIO_SDK_API_SECRET" not in found:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("the emulator process ended before it printed its URL")
            name, sep, value = line.strip().partition("=")
            if sep:
                found[name] = value
        yield EmulatorProcess(
            found["SCENARIO_BASE_URL"],
            found["SCENARIO_SDK_API_KEY"],
            found["SCENARIO_SDK_API_SECRET"],
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
