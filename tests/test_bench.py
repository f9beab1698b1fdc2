"""The benchmark harness (bench/) still runs and writes its table: a cheap subset, no speed asserted."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"


def _median(cell):
    return float(re.search(r"\*\*(" + NUM + r")\*\*", cell).group(1))


def test_bench_quick_subset_writes_rows_with_numeric_ratios(tmp_path):
    out = tmp_path / "RESULTS.md"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--runs",
            "1",
            "--only",
            "P1,P3,P5,P7,P9,P10",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    text = out.read_text()
    assert (
        "scenario-sdk 2." in text
        or "scenario-sdk 1." in text
        or re.search(r"scenario-sdk \d", text)
    )
    assert re.search(r"libcurl \d+\.\d+", text) and re.search(r"\d+ cores", text)
    rows = [line.split("|")[1:-1] for line in text.splitlines() if re.match(r"\| P\d+ \|", line)]
    by_fig = {}
    for cells in rows:
        by_fig.setdefault(cells[0].strip(), []).append([c.strip() for c in cells])
    assert set(by_fig) == {"P1", "P3", "P5", "P7", "P9", "P10"}
    assert len(by_fig["P1"]) == 3
    assert len(by_fig["P3"]) == 4 and len(by_fig["P10"]) == 3 and len(by_fig["P9"]) == 4
    # P5: every blocking call was interrupted (a worker that never saw KeyboardInterrupt gives ∞)
    assert [r[1].split(" in ")[1].split()[0] for r in by_fig["P5"]] == [
        "`job.wait()`",
        "`job.download()`",
        "`gen.result()`",
        "`as_completed([gen])`",
    ]
    for cells in by_fig["P1"] + by_fig["P7"] + by_fig["P3"] + by_fig["P10"] + by_fig["P5"]:
        # ours and the SDK's cells: min / **median** / max, all numbers; the ratio a number
        for cell in cells[2:4]:
            nums = re.findall(NUM, cell.replace("*", ""))
            assert len(nums) == 3, cells
        if cells[4] != "–":  # "–": both medians 0 (threads added in P10)
            float(
                cells[4].split()[0]
            )  # a wall-time difference may come out below the bare interpreter's
    for cells in (by_fig["P1"][0], by_fig["P7"][0]):  # import time and RSS per job are positive
        assert float(cells[4].split()[0]) > 0, cells
    # the memory figure is bytes per job, a sane size for both clients
    p7 = by_fig["P7"][0]
    for cell in p7[2:4]:
        median = float(re.search(r"\*\*([\d.]+)\*\*", cell).group(1))
        assert 50 < median < 1_000_000, p7
    # P3: wall over ideal and CPU are positive for both; the thread count sees the SDK's 50
    # worker threads (so the sampling of /proc works) and at least the main thread of ours
    wall, lag, cpu, threads = by_fig["P3"]
    for cells in (wall, lag, cpu):
        assert _median(cells[2]) > 0 and _median(cells[3]) > 0, cells
    assert _median(wall[2]) >= 0.9 and _median(wall[3]) >= 0.9, wall  # no run beats its ideal
    assert "requests per job" in wall[1]
    assert _median(threads[3]) >= 51 and _median(threads[2]) >= 1, threads
    # P10: a lag quantile in ms for both (the ticker ran), max ≥ p99
    p99, lag_max, _added = by_fig["P10"]
    for col in (2, 3):
        assert 0 <= _median(p99[col]) <= _median(lag_max[col]), (p99, lag_max)
    # P9: ours only; threads, RSS growth, CPU per job and failures are numbers
    for cells in by_fig["P9"]:
        assert cells[3] == "not run", cells
        assert len(re.findall(NUM, cells[2].replace("*", ""))) == 3, cells
    assert _median(by_fig["P9"][1][2]) > 0  # RSS grows while 500 jobs are in flight
    assert "fds max" in by_fig["P9"][3][1]


def _page(date, machine, figs):
    lines = [
        "# Benchmarks: scenario_uni1 against scenario-sdk",
        "",
        f"- date: {date}",
        f"- machine: {machine}",
        "- versions: v",
        "",
        "| id | figure | scenario_uni1 | scenario-sdk | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {f} | {f} from {date} | 1 | 2 | 3 | t | met |" for f in figs]
    lines += ["", "## How each figure is taken", ""] + [f"- {f}: how, {date}" for f in figs]
    return "\n".join(lines + ["- a general note", ""])


def test_bench_update_replaces_the_rows_run_and_keeps_the_others_with_their_run():
    sys.path.insert(0, ROOT)
    from bench import report

    first = _page("D1", "M1", ["P1", "P2", "P3", "P10"])
    second = report.merge(first, _page("D2", "M2", ["P2", "P3"]), ["P2", "P3"])
    third = report.merge(second, _page("D3", "M3", ["P3"]), ["P3"])
    table = [x for x in third.splitlines() if x.startswith("| P")]
    assert [x.split("|")[2].strip() for x in table] == [
        "P1 from D1",
        "P2 from D2",
        "P3 from D3",
        "P10 from D1",
    ]
    notes = [x for x in third.splitlines() if x.startswith("- P")]
    assert notes == ["- P1: how, D1", "- P2: how, D2", "- P3: how, D3", "- P10: how, D1"]
    head = third.split("| id |")[0]
    assert "- date: D3 — rows P3\n- machine: M3\n" in head
    assert "- rows P2: D2\n  - machine: M2\n" in head
    assert "- rows P1, P10: D1\n  - machine: M1\n" in head
    assert third.count("- a general note") == 1
