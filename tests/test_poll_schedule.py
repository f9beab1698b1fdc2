"""The poll schedule learns how long "finalizing" lasts from the client's
finished jobs (their statusHistory) and, for the next ones, sleeps through it
instead of polling through it (uni1_wait_job, finalize_prediction)."""

import datetime
import time


def _when(job: dict, status: str) -> float:
    (date,) = [h["date"] for h in job["statusHistory"] if h["status"] == status]
    return datetime.datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()


def _gets_while_finalizing(emu, job_id: str) -> int:
    job = emu.job(job_id)
    start, end = _when(job, "finalizing"), _when(job, "success")
    return sum(
        1
        for r in emu.requests
        if r.method == "GET" and r.path == f"/v1/jobs/{job_id}" and start <= r.time < end
    )


def test_later_jobs_sleep_through_finalizing(emu):
    # finalizing: the last 15% (1.8 s), progress stuck at 0.99
    emu.job_duration = 12.0
    with emu.client(timeout=60) as client:
        first = client.generate("teaches the schedule")
        first.wait(timeout=60)
        later = []
        for i in range(2):
            job = client.generate(f"learns from the first {i}")
            job.wait(timeout=60)
            later.append((job, time.time()))
    before = _gets_while_finalizing(emu, first.id)
    after = [_gets_while_finalizing(emu, job.id) for job, _ in later]
    # With a prediction: one sleep to just before the predicted end, then a look
    # or two. (Without one, how often finalizing is polled depends on where the
    # progress estimate left the schedule: from none to every quarter second,
    # so the first job's count is only reported.)
    assert max(after) <= 2, (before, after)
    for job, noticed in later:
        assert noticed - _when(emu.job(job.id), "success") < 0.8
