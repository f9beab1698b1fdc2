"""scenario-uni1 batch: input formats, the manifest, exit codes, the journal's
re-runs (after a failure, SIGKILL, Ctrl-C), --estimate, --max-cost, bad input;
and generate_many(max_cost=).

Every count of paid work is the emulator's own (emu.jobs_created)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
from conftest import PACKAGE_PARENT, png_bytes, submitted_bodies

import scenario_uni1 as uni1
from scenario_uni1 import cli


def _env(emu) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    env["PYTHONPATH"] = PACKAGE_PARENT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(emu.env())
    return env


@pytest.fixture
def creds(emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    monkeypatch.setenv("SCENARIO_BASE_URL", emu.url)
    return emu


def batch(*args: str) -> int:
    return cli.main(["batch", *args])


def manifest(out) -> list[dict]:
    with open(os.path.join(out, "manifest.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def images(out) -> list[str]:
    return sorted(n for n in os.listdir(out) if n.startswith("asset_"))


def assert_files_match(out, records) -> None:
    """Every file of every done record exists with the SHA-256 and size recorded."""
    for rec in records:
        if rec["status"] != "done":
            continue
        assert rec["files"], rec
        for f in rec["files"]:
            with open(os.path.join(out, f["path"]), "rb") as fh:
                data = fh.read()
            assert hashlib.sha256(data).hexdigest() == f["sha256"]
            assert len(data) == f["size"]


def generate_posts(emu) -> int:
    return len(submitted_bodies(emu))


# -- the input formats ------------------------------------------------------------------


def test_text_input_writes_manifest_and_files(creds, tmp_path, capsys):
    src = tmp_path / "prompts.txt"
    src.write_text("a cat\n\n  a dog  \na bird\n")
    out = tmp_path / "out"
    assert batch(str(src), "-o", str(out)) == 0
    stdout, stderr = capsys.readouterr()
    # The progress line (not a terminal: one line per item here, a tenth of the batch).
    assert "1/3 done, 2 in flight" in stderr and "/s" in stderr and "s left" in stderr
    assert "3/3 done " in stderr
    records = manifest(out)
    assert [r["line"] for r in records] == [1, 3, 4]
    assert [r["request"] for r in records] == [
        {"prompt": "a cat"},
        {"prompt": "a dog"},
        {"prompt": "a bird"},
    ]
    assert all(r["status"] == "done" and r["job_id"].startswith("job_") for r in records)
    assert all(r["cost"] == 10 and r["error"] is None for r in records)
    assert len({r["job_id"] for r in records}) == 3
    assert_files_match(out, records)
    assert len(images(out)) == 3
    assert creds.jobs_created == 3
    assert stdout.strip().splitlines()[-1].startswith("batch: 3 done, 0 failed of 3; 30 creative")
    assert os.path.exists(out / ".scenario-uni1" / "journal.sqlite")


def test_jsonl_paths_are_relative_to_the_file(creds, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ref.png").write_bytes(png_bytes())
    lines = [
        {"prompt": "with a ref", "image_refs": ["ref.png"], "aspect_ratio": "16:9"},
        {"prompt": "jpeg", "output_format": "jpeg", "web_search": True},
        {"prompt": "an edit", "source": "ref.png"},
    ]
    (folder / "items.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "out"
    assert batch(str(folder / "items.jsonl"), "-o", str(out), "-q") == 0
    bodies = submitted_bodies(creds)
    by_prompt = {b["prompt"]: b for b in bodies}
    assert len(by_prompt["with a ref"]["imageRef"]) == 1
    assert by_prompt["with a ref"]["aspectRatio"] == "16:9"
    assert by_prompt["jpeg"]["outputFormat"] == "jpeg"
    assert by_prompt["an edit"]["source"].startswith("asset_")
    records = manifest(out)
    assert records[0]["cost"] == 12  # a reference costs 2 more
    assert records[1]["files"][0]["path"].endswith(".jpg")
    assert_files_match(out, records)


def test_csv_input(creds, tmp_path):
    (tmp_path / "r1.png").write_bytes(png_bytes(color=(1, 2, 3)))
    (tmp_path / "r2.png").write_bytes(png_bytes(color=(4, 5, 6)))
    src = tmp_path / "items.csv"
    src.write_text(
        "prompt,aspect_ratio,image_refs,web_search\n"
        '"a castle, at dusk",16:9,r1.png;r2.png,yes\n'
        "a lighthouse,,,\n"
        'a mill,1:1,"[""r2.png""]",no\n'
    )
    out = tmp_path / "out"
    assert batch(str(src), "-o", str(out), "-q") == 0
    by_prompt = {b["prompt"]: b for b in submitted_bodies(creds)}
    assert by_prompt["a castle, at dusk"]["aspectRatio"] == "16:9"
    assert len(by_prompt["a castle, at dusk"]["imageRef"]) == 2
    assert by_prompt["a castle, at dusk"].get("webSearch") is True
    assert by_prompt["a lighthouse"].get("aspectRatio") in (None, "3:2")  # the default
    assert by_prompt["a lighthouse"].get("webSearch") in (None, False)
    assert len(by_prompt["a mill"]["imageRef"]) == 1
    records = manifest(out)
    assert [r["line"] for r in records] == [2, 3, 4]
    assert_files_match(out, records)


def test_stdin_jsonl_is_detected_from_content(creds, tmp_path, monkeypatch):
    data = b'{"prompt": "from stdin 1"}\n{"prompt": "from stdin 2", "aspect_ratio": "1:1"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    out = tmp_path / "out"
    assert batch("-", "-o", str(out), "-q") == 0
    assert sorted(b["prompt"] for b in submitted_bodies(creds)) == ["from stdin 1", "from stdin 2"]
    assert [r["status"] for r in manifest(out)] == ["done", "done"]
    # Kept for the resume command (stdin cannot be read twice).
    assert (out / ".scenario-uni1" / "stdin.jsonl").read_bytes() == data


def test_detect_format():
    from scenario_uni1._batch import detect_format

    assert detect_format("x.csv", "a cat") == "csv"
    assert detect_format("x.txt", '{"prompt": "a"}') == "text"
    assert detect_format("-", '\n{"prompt": "a"}') == "jsonl"
    assert detect_format("-", "prompt,aspect_ratio\na,1:1") == "csv"
    assert detect_format("-", "a cat, with a hat\na dog") == "text"
    assert detect_format("items", "prompt\na cat") == "csv"


def test_the_resume_command_prints_no_database_password():
    import argparse

    from scenario_uni1._batch import _Run

    url = "postgresql://me:s3cret@127.0.0.1:5432/ledger"
    argv = ["batch", "p.txt", "-o", "x", "--journal", url, f"--journal={url}"]
    line = _Run(argparse.Namespace(output="x"), argv).resume_command("x/stdin.txt")
    assert "s3cret" not in line
    assert line == (
        "scenario-uni1 batch p.txt -o x --journal postgresql://me@127.0.0.1:5432/ledger "
        "--journal=postgresql://me@127.0.0.1:5432/ledger < x/stdin.txt"
    )


# -- summary, --json, exit codes, re-runs ---------------------------------------------------


def test_json_summary_and_a_rerun_pays_nothing_twice(creds, tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("one\ntwo\none\n")  # the same prompt twice: two items, two jobs
    out = tmp_path / "out"
    assert batch(str(src), "-o", str(out), "--json") == 0
    stdout, stderr = capsys.readouterr()
    summary = json.loads(stdout)
    assert summary["items"] == 3 and summary["done"] == 3 and summary["failed"] == 0
    assert summary["creative_units"] == 30 and summary["creative_units_this_run"] == 30
    assert summary["exit_code"] == 0
    assert "generate_many" not in stderr  # --json: no progress
    first = manifest(out)
    assert creds.jobs_created == 3

    os.unlink(out / first[2]["files"][0]["path"])  # a file lost since
    assert batch(str(src), "-o", str(out), "--json") == 0
    summary = json.loads(capsys.readouterr()[0])
    assert summary["creative_units_this_run"] == 0 and summary["creative_units"] == 30
    assert creds.jobs_created == 3  # re-attached, not paid again
    again = manifest(out)
    assert [r["job_id"] for r in again] == [r["job_id"] for r in first]
    assert again == first  # the lost file is back, the same bytes
    assert_files_match(out, again)


def test_a_failed_item_exits_1_and_retry_failed_resubmits_only_it(creds, tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("first\nsecond\nthird\n")
    out = tmp_path / "out"
    creds.next_job_outcome("failure", error="NSFW content detected", hint="Rephrase the prompt")
    args = [str(src), "-o", str(out), "-q", "--concurrency", "1"]
    assert batch(*args) == 1
    _, stderr = capsys.readouterr()
    assert "line 1: failed: NSFW content detected (hint: Rephrase the prompt)" in stderr
    records = manifest(out)
    assert [r["status"] for r in records] == ["failed", "done", "done"]
    failed_job = records[0]["job_id"]
    assert records[0]["error"] == "NSFW content detected"
    assert records[0]["hint"] == "Rephrase the prompt"
    assert records[0]["files"] == []
    assert creds.jobs_created == 3

    assert batch(*args) == 1  # without the flag: still failed, nothing paid
    assert creds.jobs_created == 3
    assert manifest(out)[0]["job_id"] == failed_job

    assert batch(*args, "--retry-failed") == 0
    assert creds.jobs_created == 4  # only the failed item was sent again
    records = manifest(out)
    assert [r["status"] for r in records] == ["done"] * 3
    assert records[0]["job_id"] not in (failed_job, None)
    assert [b["prompt"] for b in submitted_bodies(creds)].count("first") == 2
    assert_files_match(out, records)

    assert batch(*args, "--retry-failed") == 0  # nothing failed any more: nothing sent
    assert creds.jobs_created == 4


# -- --estimate, --max-cost -----------------------------------------------------------------


def test_estimate_submits_nothing(creds, tmp_path, capsys):
    (tmp_path / "ref.png").write_bytes(png_bytes())
    src = tmp_path / "items.jsonl"
    src.write_text('{"prompt": "a"}\n{"prompt": "b", "image_refs": ["ref.png"]}\n{"prompt": "a"}\n')
    out = tmp_path / "out"
    assert batch(str(src), "-o", str(out), "--estimate", "--json") == 0
    assert json.loads(capsys.readouterr()[0]) == {"items": 3, "creative_units": 32.0}
    assert creds.jobs_created == 0 and generate_posts(creds) == 0
    assert not out.exists()
    assert batch(str(src), "-o", str(out), "--estimate") == 0
    assert "32 creative units" in capsys.readouterr()[0]


def test_max_cost_stops_at_the_budget(creds, tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("".join(f"item {i}\n" for i in range(5)))
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--json", "--concurrency", "1"]
    assert batch(*args, "--max-cost", "25") == 4
    summary = json.loads(capsys.readouterr()[0])
    assert summary["done"] == 2 and summary["not_submitted"] == 3 and summary["exit_code"] == 4
    assert summary["creative_units"] <= 25
    assert creds.jobs_created == 2
    records = manifest(out)
    assert [r["status"] for r in records] == ["done"] * 2 + ["not_submitted"] * 3
    assert all("budget" in r["error"] and r["job_id"] is None for r in records[2:])

    # The budget is the whole batch's: the items paid already count.
    assert batch(*args, "--max-cost", "30") == 4
    assert creds.jobs_created == 3
    assert batch(*args, "--max-cost", "50") == 0
    assert creds.jobs_created == 5


def test_generate_many_max_cost(client, emu, tmp_path):
    gens = list(client.generate_many([f"p{i}" for i in range(6)], concurrency=2, max_cost=35))
    refused = [g for g in gens if g.error is not None]
    assert len(refused) == 3 and emu.jobs_created == 3
    assert all(isinstance(g.error, uni1.BudgetExceededError) for g in refused)
    assert all(g.job is None and g.stage == "failed" for g in refused)
    assert isinstance(refused[0].error, uni1.Uni1Error)
    many = client.generate_many(["x"], max_cost=10)
    assert [g.error for g in many] == [None] and many.spent == 10
    with pytest.raises(uni1.InvalidRequestError):
        client.generate_many(["x"], max_cost=-1)
    with pytest.raises(uni1.InvalidRequestError):
        client.generate_many(["x"], max_cost="10")  # type: ignore[arg-type]


# -- bad input -----------------------------------------------------------------------------------


def test_bad_lines_are_named_and_nothing_is_sent(creds, tmp_path, capsys):
    src = tmp_path / "items.jsonl"
    src.write_text(
        '{"prompt": "fine"}\n'
        "{not json\n"
        '{"prompt": "x", "colour": "red"}\n'
        '{"prompt": "x", "aspect_ratio": "5:4"}\n'
        '{"prompt": "x", "image_refs": ["missing.png"]}\n'
        '["a list"]\n'
        '{"aspect_ratio": "1:1"}\n'
    )
    out = tmp_path / "out"
    assert batch(str(src), "-o", str(out)) == 2
    _, stderr = capsys.readouterr()
    for n in (2, 3, 6, 7):  # caught while reading, before any client exists
        assert f"items.jsonl:{n}: " in stderr, stderr
    assert "colour" in stderr and "items.jsonl:1:" not in stderr
    assert "nothing was submitted" in stderr
    assert creds.requests == []
    assert not out.exists()

    src.write_text(
        '{"prompt": "fine"}\n'
        '{"prompt": "x", "aspect_ratio": "5:4"}\n'
        '{"prompt": "x", "image_refs": ["missing.png"]}\n'
        '{"prompt": ""}\n'
    )
    assert batch(str(src), "-o", str(out)) == 2
    _, stderr = capsys.readouterr()
    lines = [line for line in stderr.splitlines() if "items.jsonl:" in line]
    assert [line.split(":")[2] for line in lines] == ["2", "3", "4"], stderr
    assert "aspectRatio" in lines[0] and "missing.png" in lines[1]
    assert creds.requests == [] and not out.exists()


def test_bad_csv_header_and_rows(creds, tmp_path, capsys):
    src = tmp_path / "items.csv"
    src.write_text("prompt,size\na,1\n")
    assert batch(str(src), "-o", str(tmp_path / "out")) == 2
    assert "items.csv:1: CSV header: unknown column(s) size" in capsys.readouterr()[1]
    src.write_text("prompt,web_search\na,maybe\nb,no,extra\n")
    assert batch(str(src), "-o", str(tmp_path / "out")) == 2
    stderr = capsys.readouterr()[1]
    assert "items.csv:2: web_search must be true or false" in stderr
    assert "items.csv:3: 3 fields" in stderr
    assert creds.requests == []


# -- crashes and Ctrl-C, in real processes ---------------------------------------------------


def _popen(emu, *args: str, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "scenario_uni1", "batch", *args],
        env=_env(emu),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


FAST_RESUME = ("--request-timeout", "2", "--settle-window", "1")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigkill_mid_run_then_rerun_pays_each_item_once(emu, tmp_path):
    n = 16
    emu.job_duration = 0.6
    src = tmp_path / "p.txt"
    src.write_text("".join(f"killed {i}\n" for i in range(n)))
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--concurrency", "4", *FAST_RESUME]
    proc = _popen(emu, *args)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(images(out)) < 3):
            time.sleep(0.02)
        assert len(images(out)) >= 3
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    paid_before = emu.jobs_created
    assert 3 <= paid_before < n
    rerun = subprocess.run(
        [sys.executable, "-m", "scenario_uni1", "batch", *args, "--json"],
        env=_env(emu),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert emu.jobs_created == n, f"{emu.jobs_created} jobs for {n} items"
    records = manifest(out)
    assert [r["status"] for r in records] == ["done"] * n
    assert len({r["job_id"] for r in records}) == n
    assert len(images(out)) == n
    assert_files_match(out, records)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_lets_in_flight_land_and_prints_the_resume_command(emu, tmp_path):
    n = 10
    emu.job_duration = 1.0
    src = tmp_path / "p.txt"
    src.write_text("".join(f"interrupted {i}\n" for i in range(n)))
    out = tmp_path / "out"
    proc = _popen(emu, str(src), "-o", str(out), "--concurrency", "2", *FAST_RESUME)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and emu.jobs_created < 3:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    paid = emu.jobs_created
    assert paid < n
    records = manifest(out)
    # Every job paid for landed: in flight at Ctrl-C, it was let finish.
    assert sum(r["status"] == "done" for r in records) == paid
    assert sum(r["status"] == "pending" for r in records) == n - paid
    assert_files_match(out, records)
    resume = [line for line in stderr.splitlines() if "to finish the batch: " in line]
    assert len(resume) == 1, stderr
    command = shlex.split(resume[0].split("to finish the batch: ", 1)[1])
    assert command[:2] == ["scenario-uni1", "batch"]
    done = subprocess.run(
        [sys.executable, "-m", "scenario_uni1", *command[1:]],
        env=_env(emu),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert emu.jobs_created == n
    records = manifest(out)
    assert [r["status"] for r in records] == ["done"] * n
    assert len(images(out)) == n
    assert_files_match(out, records)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_second_ctrl_c_leaves_at_once_and_the_rerun_attaches(emu, tmp_path):
    n = 4
    emu.job_duration = 3.0
    src = tmp_path / "p.txt"
    src.write_text("".join(f"left {i}\n" for i in range(n)))
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--concurrency", "2", *FAST_RESUME]
    proc = _popen(emu, *args)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and emu.jobs_created < 2:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        line = proc.stderr.readline()
        while line and "stopping:" not in line:
            line = proc.stderr.readline()
        assert "2 in flight will land" in line
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "to finish the batch: scenario-uni1 batch" in stderr
    assert [r["status"] for r in manifest(out)] == ["pending"] * n  # it did not wait
    assert emu.jobs_created == 2
    done = subprocess.run(
        [sys.executable, "-m", "scenario_uni1", "batch", *args],
        env=_env(emu),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert emu.jobs_created == n  # the two left in flight were re-attached, not paid again
    assert_files_match(out, manifest(out))
    assert len(images(out)) == n


def test_a_download_failure_is_finished_by_the_same_command(creds, tmp_path, capsys):
    src = tmp_path / "p.txt"
    src.write_text("kept 1\nkept 2\n")
    out = tmp_path / "out"
    creds.inject("GET", origin="cdn", status=404, times=None)  # every image is refused
    assert batch(str(src), "-o", str(out), "-q") == 1
    stderr = capsys.readouterr()[1]
    assert "the same command again finishes" in stderr
    records = manifest(out)
    assert [r["status"] for r in records] == ["failed"] * 2
    assert all(r["job_id"] and r["files"] == [] and r["error"] for r in records)
    assert creds.jobs_created == 2
    creds.clear_faults()
    assert batch(str(src), "-o", str(out), "-q") == 0  # no --retry-failed: the jobs are paid
    assert creds.jobs_created == 2
    again = manifest(out)
    assert [r["job_id"] for r in again] == [r["job_id"] for r in records]
    assert_files_match(out, again)
