"""The benchmark harness (bench/) still runs and writes its table: a cheap subset, no speed asserted."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
            "P1,P3,P7",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
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
    assert set(by_fig) == {"P1", "P3", "P7"}
    assert len(by_fig["P1"]) == 3
    for cells in by_fig["P1"] + by_fig["P7"]:
        # ours and the SDK's cells: min / **median** / max, all numbers; the ratio a positive number
        for cell in cells[2:4]:
            nums = re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", cell.replace("*", ""))
            assert len(nums) == 3, cells
        float(
            cells[4].split()[0]
        )  # a number (a wall-time difference may come out below the bare interpreter's)
    for cells in (by_fig["P1"][0], by_fig["P7"][0]):  # import time and RSS per job are positive
        assert float(cells[4].split()[0]) > 0, cells
    # the memory figure is bytes per job, a sane size for both clients
    p7 = by_fig["P7"][0]
    for cell in p7[2:4]:
        median = float(re.search(r"\*\*([\d.]+)\*\*", cell).group(1))
        assert 50 < median < 1_000_000, p7
    assert "needs the engine (issue 7)" in by_fig["P3"][0][2]
