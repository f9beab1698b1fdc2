"""as_completed's cost per completion does not grow with the number watched.

Each completion reaches the consumer through its done callback (a deque and a
lock the callback releases); the consumer never hands the whole list of live
generations to a wait (which made a batch of N cost O(N²) lookups). What is
counted here is the work, not the time: every generation a wait or a scan
looked at.
"""

from __future__ import annotations

import scenario_uni1 as uni1
from scenario_uni1 import _core, _many


def test_each_completion_costs_o1_not_o_n(client, emu, monkeypatch):
    looked_at = []
    real_wait_first = _core.wait_first
    real_pairs = _many.AsCompleted._pairs

    def counting_wait_first(gens, *args, **kwargs):
        gens = list(gens)
        looked_at.append(len(gens))
        return real_wait_first(gens, *args, **kwargs)

    def counting_pairs(self):
        pairs = real_pairs(self)
        looked_at.append(len(pairs))
        return pairs

    monkeypatch.setattr(_core, "wait_first", counting_wait_first)
    monkeypatch.setattr(_many.AsCompleted, "_pairs", counting_pairs)
    n = 300
    jobs = []
    for i in range(n):
        # Ends spread over ~3 s, so they reach the consumer one or a few at a
        # time and it waits between them (a wait per completion).
        emu.job_duration = 0.3 + 0.01 * i
        jobs.append(client.generate(f"spread {i}"))
    seen = [job.id for job in uni1.as_completed(jobs, timeout=120)]
    assert sorted(seen) == sorted(job.id for job in jobs)
    # A rescan of the live ones after a second of silence is the only look at
    # more than one: at most a few over the whole run, each at most n.
    assert sum(looked_at) <= 3 * n, (len(looked_at), sum(looked_at))
