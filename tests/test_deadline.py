"""One deadline type (issue 7): a timeout is checked once where it enters and then
travels as an absolute time, the same end for every step of a sequence.

_core.Deadline is that type: the glue makes one from a public timeout= and hands the
object itself to each step (uploads, submit, wait, download) as their timeout=; the
binding gives its time to the core unchanged, never "seconds left" recomputed.
"""

from __future__ import annotations

import math
import time

import pytest
from conftest import png_bytes

import scenario_uni1 as uni1
from scenario_uni1 import _core


def test_a_deadline_is_an_absolute_time_monotonic():
    # The core's clock (CLOCK_MONOTONIC) is Python's time.monotonic() on Linux.
    before = time.monotonic()
    d = _core.Deadline(5)
    after = time.monotonic()
    assert before + 5 <= d.at <= after + 5
    left = d.remaining()
    assert 4.9 < left <= 5
    assert _core.Deadline(None).at is None and _core.Deadline(None).remaining() is None
    assert _core.Deadline(math.inf).at is None
    assert _core.Deadline(d).at == d.at  # a Deadline given again is the same end
    assert _core.Deadline(0).at is not None  # a zero timeout expires, it is not "none"


def test_remaining_raises_timeout_error_once_passed():
    d = _core.Deadline(0.05)
    time.sleep(0.08)
    with pytest.raises(uni1.TimeoutError, match="deadline passed"):
        d.remaining()
    assert "passed" in repr(d)


@pytest.mark.parametrize("bad", [True, -1, math.nan, "5", b"5", [1]])
def test_a_deadline_is_checked_like_every_timeout(client, bad):
    job = client.job  # a call taking timeout=, for the same rule's message
    with pytest.raises(uni1.InvalidRequestError) as direct:
        job("job_x", timeout=bad)
    with pytest.raises(uni1.InvalidRequestError) as made:
        _core.Deadline(bad)
    assert type(made.value) is type(direct.value)
    assert str(made.value) == str(direct.value)


def test_the_type_is_final():
    with pytest.raises(TypeError):

        class _Mine(_core.Deadline):  # type: ignore[misc]
            pass


def test_a_deadline_passed_as_timeout_is_not_restarted(emu, client):
    # As a relative timeout the 0.3 s would start again at the call; as a Deadline
    # it ended before the call: TimeoutError, and nothing is sent.
    job = client._submit("absolute")
    d = _core.Deadline(0.3)
    time.sleep(0.35)
    emu.clear_requests()
    with pytest.raises(uni1.TimeoutError):
        job.refresh(timeout=d)
    assert emu.requests == []
    assert job.refresh(timeout=0.3).id == job.id  # the same wait as seconds goes on


def test_every_step_of_run_gets_the_same_deadline(emu, monkeypatch):
    seen = []
    real_start, real_submit = uni1.Client._start, uni1.Client._submit

    def start(self, *args, **kw):
        seen.append(kw["timeout"])  # the upload, on the engine
        return real_start(self, *args, **kw)

    def submit(self, *args, **kw):
        seen.append(kw["timeout"])
        return real_submit(self, *args, **kw)

    monkeypatch.setattr(uni1.Client, "_start", start)
    monkeypatch.setattr(uni1.Client, "_submit", submit)
    with emu.client(timeout=10.0) as c:
        t0 = time.monotonic()
        images = c.run("one deadline", source=png_bytes(), timeout=30)
    assert len(images) >= 1
    assert len(seen) == 2
    assert all(isinstance(d, _core.Deadline) for d in seen)
    assert seen[0] is seen[1]  # one object: the end computed once, at the edge
    assert t0 + 30 <= seen[0].at <= t0 + 30.5
