"""Shared fixtures: an emulator per test (fast settings) and a client for it.

Every test runs with the SCENARIO_* variables cleared, so a developer's real
credentials can never be used (or leak) by the suite.
"""

from __future__ import annotations

import io
import os

import pytest

import scenario_uni1 as uni1

FAST_JOB = 0.2  # seconds of emulated server time per job

ENV_VARS = (
    "SCENARIO_SDK_API_KEY",
    "SCENARIO_SDK_API_SECRET",
    "SCENARIO_SDK_JWT",
    "SCENARIO_BASE_URL",
    "SCENARIO_UNI1_LOG",
)

GENERATE_PATH = "/v1/generate/custom/model_luma-uni-1-max"


def _plugin_installed() -> bool:
    from importlib.metadata import entry_points

    return any(
        ep.value.startswith("scenario_uni1.pytest_plugin") for ep in entry_points(group="pytest11")
    )


# An installed package registers the plugin through its pytest11 entry point;
# a checkout built in place (setup.py build_ext --inplace) does not.
if not _plugin_installed():
    pytest_plugins = ["scenario_uni1.pytest_plugin"]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    uni1._reset_default_client()
    yield
    uni1._reset_default_client()


@pytest.fixture
def emu(uni1_emulator_shared):
    """The plugin's session emulator, reset for this test, with short jobs."""
    uni1_emulator_shared.job_duration = FAST_JOB
    return uni1_emulator_shared


@pytest.fixture
def client(emu):
    with emu.client(timeout=10.0) as c:
        yield c


@pytest.fixture
def emu_env(emu, monkeypatch):
    """The emulator's credentials and URL in the environment (for the default client)."""
    monkeypatch.setenv("SCENARIO_SDK_API_KEY", emu.api_key)
    monkeypatch.setenv("SCENARIO_SDK_API_SECRET", emu.api_secret)
    monkeypatch.setenv("SCENARIO_BASE_URL", emu.url)
    uni1._reset_default_client()
    return emu


def png_bytes(width: int = 64, height: int = 32, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(width: int = 64, height: int = 32, color=(30, 200, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="JPEG")
    return buf.getvalue()


def submitted_bodies(emu) -> list[dict]:
    """The JSON bodies of every real (not dry-run) generate POST, in order."""
    return [
        req.json()
        for req in emu.requests
        if req.method == "POST" and req.path == GENERATE_PATH and req.query.get("dryRun") != "true"
    ]


def ratio_of(text: str) -> float:
    w, h = text.split(":")
    return int(w) / int(h)


@pytest.fixture
def tmp_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_no_temp_files(directory) -> None:
    leftovers = [n for n in os.listdir(directory) if n.startswith(".")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
