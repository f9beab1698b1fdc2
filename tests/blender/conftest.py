"""Real Blender (the bpy module, CPython 3.13), for the add-on in examples/blender.

Run by `bash scripts/dev.sh test` (its Blender layer) in a venv of its own:
    python -P -m pytest -p no:cacheprovider --confcutdir=tests/blender tests/blender
with UNI1_WHEEL naming the project's wheel. --confcutdir keeps tests/conftest.py
(the main suite's, which imports scenario_uni1 at once) out: here the package
comes from the wheel that Blender itself installs with the extension.

Blender's user resources (preferences, the extensions repository and its
site-packages) go to a temporary directory, set before bpy is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid

import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "examples", "blender")

_resources = tempfile.mkdtemp(prefix="uni1-blender-")
os.environ["BLENDER_USER_RESOURCES"] = _resources
for _name in ("SCENARIO_SDK_API_KEY", "SCENARIO_SDK_API_SECRET", "SCENARIO_BASE_URL"):
    os.environ.pop(_name, None)

import bpy  # noqa: E402  (after BLENDER_USER_RESOURCES)
import pytest  # noqa: E402

# Blender's extension tool (`blender --command extension ...` runs the same file).
BLENDER_EXT = os.path.join(
    bpy.utils.system_resource("SCRIPTS"), "addons_core", "bl_pkg", "cli", "blender_ext.py"
)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_resources, ignore_errors=True)


def manifest() -> dict:
    with open(os.path.join(SOURCE, "blender_manifest.toml"), "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory) -> str:
    """The extension built by Blender's own tool (which validates the manifest),
    from a copy of examples/blender with the wheel the manifest names."""
    wheel = os.environ.get("UNI1_WHEEL")
    assert wheel and os.path.isfile(wheel), "set UNI1_WHEEL to the project's wheel"
    (listed,) = manifest()["wheels"]
    assert os.path.basename(listed) == os.path.basename(wheel), (
        "blender_manifest.toml lists another wheel than the one built: "
        f"{listed} vs {os.path.basename(wheel)}"
    )
    src = tmp_path_factory.mktemp("source") / "scenario_uni1"
    shutil.copytree(SOURCE, src, ignore=shutil.ignore_patterns("__pycache__", "wheels"))
    (src / "wheels").mkdir()
    shutil.copy(wheel, src / "wheels")
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, BLENDER_EXT, "build", "--source-dir", str(src), "--output-dir", str(out)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("*.zip")
    check = subprocess.run(
        [sys.executable, BLENDER_EXT, "validate", str(built)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return str(built)


@pytest.fixture(scope="session")
def addon(extension_zip):
    """The extension installed from its .zip and enabled, as Blender's
    "Install from Disk" does: the wheel goes to Blender's extension
    site-packages. Yields the add-on's package."""
    result = bpy.ops.extensions.package_install_files(
        filepath=extension_zip, repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}
    name = "bl_ext.user_default." + manifest()["id"]
    assert name in bpy.context.preferences.addons
    yield sys.modules[name]
    import addon_utils

    if name in bpy.context.preferences.addons:
        addon_utils.disable(name, default_set=True)


@pytest.fixture(scope="session")
def uni1(addon):
    """scenario_uni1 as the extension's wheel installed it."""
    import scenario_uni1

    assert scenario_uni1.__file__.startswith(_resources), scenario_uni1.__file__
    return scenario_uni1


class EmulatorProcess:
    """The emulator in a process of its own, as the real service would be: in
    Blender's process its Python thread would take the GIL from the UI thread
    (up to the 5 ms switch interval at a time) and blur what is measured.
    Steered over its admin routes; jobs are read through the API."""

    def __init__(self, proc, url: str, api_key: str, api_secret: str, client):
        self.proc, self.url, self.api_key, self.api_secret = proc, url, api_key, api_secret
        self.admin_url = url.rsplit("/v1", 1)[0] + "/_emulator/"
        self.client = client(api_key, api_secret, base_url=url)

    def admin(self, name: str, body: dict | None = None, method: str | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        method = method or ("GET" if body is None else "POST")
        req = urllib.request.Request(self.admin_url + name, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as answer:
            return json.load(answer)

    def configure(self, **knobs) -> None:
        self.admin("config", knobs)

    def requests_total(self) -> int:
        return self.admin("stats")["requests_total"]

    def job(self, job_id: str) -> dict:
        """The job's JSON, as the API answers it."""
        return self.client.job(job_id).refresh().raw


@pytest.fixture(scope="session")
def emu(uni1):
    # Credentials no .blend may contain (tests look for these bytes).
    token = uuid.uuid4().hex
    package_parent = os.path.dirname(os.path.dirname(uni1.__file__))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scenario_uni1.emulator",
            "--port=0",
            "--job-duration=0.5",
            "--image-long-side=256",
            f"--api-key=key-{token}",
            f"--api-secret=secret-{token}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": package_parent},
    )
    try:
        found: dict[str, str] = {}
        while "SCENARIO_SDK_API_SECRET" not in found:
            line = proc.stdout.readline()
            assert line, "the emulator process ended before printing its URL"
            name, sep, value = line.strip().partition("=")
            if sep:
                found[name] = value
        e = EmulatorProcess(
            proc,
            found["SCENARIO_BASE_URL"],
            found["SCENARIO_SDK_API_KEY"],
            found["SCENARIO_SDK_API_SECRET"],
            uni1.Client,
        )
        e.configure(cancellable=True)
        yield e
        e.client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def prefs(addon, emu):
    """The add-on's preferences aimed at the emulator."""
    p = bpy.context.preferences.addons[addon.__name__].preferences
    p.api_key, p.api_secret, p.base_url = emu.api_key, emu.api_secret, emu.url
    yield p
    entry = bpy.context.preferences.addons.get(addon.__name__)
    if entry is not None:  # still enabled
        entry.preferences.api_key = entry.preferences.api_secret = ""
        entry.preferences.base_url = ""
