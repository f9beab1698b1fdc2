"""The scenario-uni1 command, in-process against the emulator and as a real subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import PACKAGE_PARENT, png_bytes
from PIL import Image as PILImage

import scenario_uni1 as uni1
from scenario_uni1 import cli
from scenario_uni1._progress import ProgressPrinter
from scenario_uni1.emulator import Emulator

ROOT = PACKAGE_PARENT  # what a child puts on PYTHONPATH to import the package under test


def run_module(*args: str, env: dict | None = None, timeout: float = 60):
    """python -m scenario_uni1 ARGS in a fresh process, SCENARIO_* cleared."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "scenario_uni1", *args],
        check=False,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


# -- subprocess, offline ---------------------------------------------------------------


def test_generate_offline_writes_an_image(tmp_path):
    proc = run_module(
        "generate", "--offline", "a cat", "-o", str(tmp_path), "--aspect-ratio", "16:9"
    )
    assert proc.returncode == 0, proc.stderr
    files = [f for f in os.listdir(tmp_path)]
    assert len(files) == 1 and files[0].endswith(".png")
    assert proc.stdout.strip() == str(tmp_path / files[0])
    with PILImage.open(tmp_path / files[0]) as im:
        assert im.format == "PNG" and im.width > im.height
    assert "Traceback" not in proc.stderr


def test_generate_json(emu, monkeypatch, tmp_path, capsys):
    # In-process against the test emulator: the offline one (2 s jobs) is slow.
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    out = tmp_path / "new" / "dir"
    args = ["--base-url", emu.url, "generate", "a cat", "--json", "--format", "jpeg", "-q"]
    code = cli.main([*args, "-o", str(out)])
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["job_id"].startswith("job_")
    assert data["status"] == "success"
    assert data["cost"] > 0
    assert len(data["files"]) == 1 and data["files"][0].endswith(".jpg")
    assert data["asset_ids"] and data["error"] is None
    with PILImage.open(data["files"][0]) as im:
        assert im.format == "JPEG"
    assert stderr == ""  # --quiet: no progress line


def test_generate_offline_no_wait_prints_job_id(tmp_path):
    proc = run_module("generate", "--offline", "a cat", "--no-wait", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("job_")
    assert len(proc.stdout.split()) == 1
    assert os.listdir(tmp_path) == []


def test_generate_offline_twice_in_one_directory_gives_two_files(tmp_path):
    # What `bash scripts/dev.sh demo` runs, twice: the second run used to find the
    # first one's file (the emulator gave the same ids on every start).
    runs = [run_module("generate", "--offline", "a cat", "-o", str(tmp_path)) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and all(f.endswith(".png") for f in files)
    assert sorted(p.stdout.strip() for p in runs) == [str(tmp_path / f) for f in files]


def test_bad_argument_exits_2_with_message():
    proc = run_module("generate", "--offline", "a cat", "--format", "gif")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_module("generate", "--offline", "a cat", "--aspect-ratio", "5:4")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "16:9" in proc.stderr  # names the valid ones
    assert "Traceback" not in proc.stderr


def test_missing_credentials_exit_2_without_traceback():
    proc = run_module("generate", "a cat")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "SCENARIO_SDK_API_KEY" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_command_is_a_usage_error():
    proc = run_module()
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_version():
    proc = run_module("--version")
    assert proc.returncode == 0 and proc.stdout.strip().startswith("scenario-uni1 ")


# -- in-process, against the test emulator ---------------------------------------------


@pytest.fixture
def cli_env(emu, monkeypatch):
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    return emu


def test_generate_against_emulator_with_base_url(cli_env, tmp_path, capsys):
    code = cli.main(["--base-url", cli_env.url, "generate", "a cat", "-o", str(tmp_path), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len(os.listdir(tmp_path)) == 1 and out.strip() == str(tmp_path / os.listdir(tmp_path)[0])
    # --base-url after the subcommand works too.
    code = cli.main(["generate", "a dog", "-o", str(tmp_path), "-q", "--base-url", cli_env.url])
    assert code == 0 and len(os.listdir(tmp_path)) == 2


def test_generate_with_refs_and_source(cli_env, tmp_path, capsys):
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(90, 30))
    out_dir = tmp_path / "out"
    code = cli.main(
        [
            "--base-url", cli_env.url, "generate", "combine", "--source", str(ref),
            "--ref", str(ref), "--ref", str(ref), "--web-search", "--json", "-q",
            "-o", str(out_dir),
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    with PILImage.open(data["files"][0]) as im:
        assert abs(im.width / im.height - 3) < 0.06  # the source's 3:1 kept
    assert cli_env.request_count(method="POST", path="^/v1/assets$") == 1
    body = [r.json() for r in cli_env.requests if r.path.startswith("/v1/generate")][-1]
    assert body["webSearch"] is True and len(body["imageRef"]) == 2


def test_upload_prints_asset_id(cli_env, tmp_path, capsys):
    path = tmp_path / "pic.png"
    path.write_bytes(png_bytes())
    code = cli.main(["--base-url", cli_env.url, "upload", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    asset_id = out.strip()
    assert asset_id.startswith("asset_") and asset_id in cli_env.assets


def test_upload_unknown_file_type_exits_2(cli_env, tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    code = cli.main(["--base-url", cli_env.url, "upload", str(path)])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ")
    assert cli_env.request_count() == 0


def test_estimate_prints_creative_units(cli_env, capsys):
    code = cli.main(["--base-url", cli_env.url, "estimate", "a cat", "--aspect-ratio", "1:1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert float(out.strip()) > 0
    assert cli_env.jobs_created == 0
    code = cli.main(["--base-url", cli_env.url, "estimate", "a cat", "--json"])
    out, _ = capsys.readouterr()
    assert json.loads(out)["creative_units"] > 0


def test_job_show_wait_and_download(cli_env, tmp_path, capsys):
    code = cli.main(["--base-url", cli_env.url, "generate", "a cat", "--no-wait"])
    job_id = capsys.readouterr().out.strip()
    assert code == 0 and job_id.startswith("job_")

    code = cli.main(["--base-url", cli_env.url, "job", job_id])
    out, _ = capsys.readouterr()
    assert code == 0 and job_id in out and "status" in out

    code = cli.main(
        ["--base-url", cli_env.url, "job", job_id, "--download", str(tmp_path), "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "success" and len(data["files"]) == 1
    assert os.path.exists(data["files"][0])


def test_job_failure_exits_3_with_hint(cli_env, tmp_path, capsys):
    cli_env.next_job_outcome("failure", error="Content filtered", hint="Rephrase the prompt")
    code = cli.main(["--base-url", cli_env.url, "generate", "bad", "-o", str(tmp_path), "-q"])
    _, err = capsys.readouterr()
    assert code == 3
    assert "error: " in err and "Content filtered" in err
    assert "hint: Rephrase the prompt" in err
    assert os.listdir(tmp_path) == []
    job_id = list(cli_env.jobs)[-1]
    assert job_id in err
    # Showing a failed job succeeds and shows why; waiting for it fails with 3.
    code = cli.main(["--base-url", cli_env.url, "job", job_id])
    out, _ = capsys.readouterr()
    assert code == 0 and "failure" in out and "Content filtered" in out and "Rephrase" in out
    code = cli.main(["--base-url", cli_env.url, "job", job_id, "--wait", "--json"])
    out, err = capsys.readouterr()
    assert code == 3 and json.loads(out)["status"] == "failure" and "Content filtered" in err


def _generate_on_a_seeded_emulator(monkeypatch, out, *extra):
    """generate against a fresh Emulator(seed=7): the same asset id on every call."""
    with Emulator(seed=7, job_duration=0) as e:
        monkeypatch.setenv("SCENARIO_SDK_API_KEY", e.api_key)
        monkeypatch.setenv("SCENARIO_SDK_API_SECRET", e.api_secret)
        return cli.main(["--base-url", e.url, "generate", "a cat", "-o", str(out), "-q", *extra])


def test_generate_refuses_to_overwrite_and_names_the_flag(monkeypatch, tmp_path, capsys):
    assert _generate_on_a_seeded_emulator(monkeypatch, tmp_path) == 0
    out, _ = capsys.readouterr()
    (name,) = os.listdir(tmp_path)
    assert out.strip() == str(tmp_path / name)
    first = (tmp_path / name).read_bytes()

    assert _generate_on_a_seeded_emulator(monkeypatch, tmp_path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    message, hint = err.splitlines()
    assert message == f"error: {tmp_path / name} exists (pass --overwrite to replace it)"
    # The job was paid for: the way to its images.
    assert hint.startswith("hint: the job is done") and "scenario-uni1 job job_" in hint
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == first

    (tmp_path / name).write_bytes(b"stale")
    assert _generate_on_a_seeded_emulator(monkeypatch, tmp_path, "--overwrite") == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / name) and err == ""
    assert os.listdir(tmp_path) == [name] and (tmp_path / name).read_bytes() == first


def test_job_download_refuses_to_overwrite_and_names_the_flag(cli_env, tmp_path, capsys):
    job_id = cli_env.client().generate("a cat").id
    args = ["--base-url", cli_env.url, "job", job_id, "--download", str(tmp_path), "-q"]
    assert cli.main(args) == 0
    (name,) = os.listdir(tmp_path)
    capsys.readouterr()
    (tmp_path / name).write_bytes(b"mine")
    assert cli.main(args) == 1
    _, err = capsys.readouterr()
    assert err == f"error: {tmp_path / name} exists (pass --overwrite to replace it)\n"
    assert (tmp_path / name).read_bytes() == b"mine"
    assert cli.main([*args, "--overwrite"]) == 0
    assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("outputs", [1, 3])
def test_python_api_names_the_overwrite_argument(emu, client, tmp_path, outputs):
    emu.outputs_per_job = outputs
    job = client.generate("a cat").wait(timeout=20)
    assert len(job.download(tmp_path)) == outputs
    with pytest.raises(FileExistsError, match=r"exists \(pass overwrite=True to replace it\)"):
        job.download(tmp_path)


def test_unknown_job_exits_1(cli_env, capsys):
    code = cli.main(["--base-url", cli_env.url, "job", "job_doesnotexist000000000000"])
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("error: ")


def test_wrong_secret_exits_1(cli_env, monkeypatch, capsys):
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", "wrong")
    code = cli.main(["--base-url", cli_env.url, "estimate", "a cat"])
    _, err = capsys.readouterr()
    assert code == 1 and err.startswith("error: ") and "wrong" not in err


def test_timeout_exits_1(cli_env, tmp_path, capsys):
    cli_env.job_duration = 30
    code = cli.main(
        ["--base-url", cli_env.url, "generate", "slow", "-o", str(tmp_path), "--timeout", "0.5"]
    )
    _, err = capsys.readouterr()
    assert code == 1
    assert "error: " in err and "Traceback" not in err


def test_keyboard_interrupt_exits_130(cli_env, monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli._COMMANDS, "estimate", interrupted)
    assert cli.main(["--base-url", cli_env.url, "estimate", "x"]) == 130


def test_progress_line_while_waiting(cli_env, tmp_path, capsys):
    code = cli.main(["--base-url", cli_env.url, "generate", "a cat", "-o", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and "success" in lines[-1] and "100%" in lines[-1]


# -- the progress printer ------------------------------------------------------------------


class _FakeJob:
    def __init__(self, status, progress, done=False):
        self.id = "job_fake"
        self.status = status
        self.progress = progress
        self.done = done


class _Stream:
    def __init__(self, tty):
        self.tty = tty
        self.parts = []

    def isatty(self):
        return self.tty

    def write(self, s):
        self.parts.append(s)

    def flush(self):
        pass

    @property
    def text(self):
        return "".join(self.parts)


def test_progress_printer_on_a_terminal_rewrites_one_line():
    stream = _Stream(tty=True)
    printer = ProgressPrinter(stream)
    printer(_FakeJob("queued", 0.0))
    printer(_FakeJob("in-progress", 0.5))
    printer(_FakeJob("in-progress", 0.75))
    printer(_FakeJob("success", 1.0, done=True))
    printer(_FakeJob("success", 1.0, done=True))  # after the end: nothing
    text = stream.text
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")
    assert "50%" in text and "75%" in text and "100%" in text


def test_progress_printer_elsewhere_prints_status_changes_only():
    stream = _Stream(tty=False)
    printer = ProgressPrinter(stream)
    for job in (
        _FakeJob("queued", 0.0),
        _FakeJob("queued", 0.0),
        _FakeJob("in-progress", 0.2),
        _FakeJob("in-progress", 0.6),
        _FakeJob("success", 1.0, done=True),
    ):
        printer(job)
    lines = stream.text.splitlines()
    assert [line.split()[1] for line in lines] == ["queued", "in-progress", "success"]
    assert "\r" not in stream.text


def test_progress_printer_close_ends_an_open_line():
    stream = _Stream(tty=True)
    printer = ProgressPrinter(stream)
    printer(_FakeJob("in-progress", 0.3))
    printer.close()
    printer.close()
    assert stream.text.endswith("\n") and stream.text.count("\n") == 1


def test_wait_progress_true_without_stderr_still_waits(client, monkeypatch):
    # pythonw and some services run with sys.stderr = None: nothing to show,
    # and the wait must go on to the end.
    monkeypatch.setattr(sys, "stderr", None)
    job = client.generate("a cat")
    assert job.wait(timeout=20, progress=True) is job
    assert job.status == "success" and job.progress == 1.0


class _BrokenStream:
    def __init__(self, exc):
        self.exc = exc
        self.writes = 0

    def isatty(self):
        return False

    def write(self, s):
        self.writes += 1
        raise self.exc

    def flush(self):
        pass


@pytest.mark.parametrize(
    "make_stream",
    [
        lambda: _BrokenStream(BrokenPipeError(32, "Broken pipe")),
        lambda: _BrokenStream(OSError(5, "Input/output error")),
        lambda: io.BytesIO(),  # a binary stream: write(str) raises TypeError
        lambda: _closed_text_stream(),  # write raises ValueError
    ],
    ids=["broken-pipe", "eio", "binary", "closed"],
)
def test_wait_progress_true_with_a_failing_stderr_still_waits(client, monkeypatch, make_stream):
    stream = make_stream()
    monkeypatch.setattr(sys, "stderr", stream)
    job = client.generate("a cat")
    assert job.wait(timeout=20, progress=True) is job
    assert job.status == "success"
    if isinstance(stream, _BrokenStream):
        # The first failed write turned the display off: no write per poll after it.
        assert stream.writes == 1


def _closed_text_stream():
    stream = io.StringIO()
    stream.close()
    return stream


def test_progress_printer_disables_itself_after_a_failed_write():
    stream = _BrokenStream(RuntimeError("odd stream"))
    printer = ProgressPrinter(stream)
    printer(_FakeJob("queued", 0.0))
    printer(_FakeJob("in-progress", 0.5))
    printer(_FakeJob("success", 1.0, done=True))
    printer.close()
    assert stream.writes == 1


# -- signals, terminals, the emulator command ----------------------------------------------


def _popen_module(*args: str, env: dict | None = None, **kw):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCENARIO_")}
    full_env["PYTHONPATH"] = ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "scenario_uni1", *args], env=full_env, **kw)


def test_ctrl_c_while_waiting_exits_130(emu, tmp_path):
    emu.job_duration = 60
    env = {"SCENARIO_SDK_API_KEY": emu.api_key, "SCENARIO_SDK_API_SECRET": emu.api_secret}
    proc = _popen_module(
        "--base-url", emu.url, "generate", "slow", "-o", str(tmp_path),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # The first progress line means the job was submitted and we are waiting.
        first = proc.stderr.readline()
        assert "job_" in first, first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.count("interrupted") == 1, err  # said once, with the way back to the job
    assert "Traceback" not in err
    assert "scenario-uni1 job job_" in err  # how to pick the job up again
    assert os.listdir(tmp_path) == []


def test_ctrl_c_offline_says_interrupted_once(tmp_path):
    proc = _popen_module(
        "generate", "--offline", "slow", "-o", str(tmp_path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stderr.readline()
        assert "job_" in first, first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if "interrupted" in line] == ["interrupted"], err
    assert "Traceback" not in err and "scenario-uni1 job" not in err  # the job died with it


def test_progress_line_on_a_terminal_is_rewritten(emu, tmp_path):
    import pty

    env = {"SCENARIO_SDK_API_KEY": emu.api_key, "SCENARIO_SDK_API_SECRET": emu.api_secret}
    master, slave = pty.openpty()
    try:
        proc = _popen_module(
            "--base-url", emu.url, "generate", "a cat", "-o", str(tmp_path),
            env=env, stdout=subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        out, _ = proc.communicate(timeout=30)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the other end is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert err.startswith("\r") and "success" in err and "100%" in err
    assert err.rstrip("\r\n").count("\n") == 0  # one line, rewritten in place
    assert out.strip().endswith(b".png")


def test_emulator_command_passes_the_seed(monkeypatch):
    import scenario_uni1.emulator as emulator_mod

    seen = []
    monkeypatch.setattr(emulator_mod, "serve", lambda **kw: seen.append(kw))
    assert cli.main(["emulator", "--port", "0", "--seed", "42"]) == 0
    assert cli.main(["emulator", "--port", "0"]) == 0
    assert [kw["seed"] for kw in seen] == [42, None]


def test_emulator_command_serves_until_sigint():
    proc = _popen_module(
        "emulator", "--port", "0", "--job-duration", "0.1",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        settings = {}
        while "SCENARIO_SDK_API_SECRET" not in settings:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            if "=" in line:
                key, _, value = line.strip().partition("=")
                settings[key] = value
        with uni1.Client(
            settings["SCENARIO_SDK_API_KEY"],
            settings["SCENARIO_SDK_API_SECRET"],
            base_url=settings["SCENARIO_BASE_URL"],
        ) as c:
            assert c.run("a cat", timeout=20)[0].data[:4] == b"\x89PNG"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
