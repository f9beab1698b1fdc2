"""Shared fixtures: an emulator per test (fast settings) and a client for it.

Every test runs with the SCENARIO_* variables cleared, so a developer's real
credentials can never be used (or leak) by the suite.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import sys
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _test_the_installed_package() -> bool:
    """In a source tree without the extension built in place (an unpacked sdist),
    make this process and its children import the installed package.

    The source tree's scenario_uni1/ (first on sys.path under `python -m pytest`,
    and as a child's current directory) has no _core: every import of the
    extension would fail. Returns True when the source tree was set aside.
    """
    source = os.path.join(ROOT, "scenario_uni1")
    built = (
        os.path.exists(os.path.join(source, "_core" + suffix)) for suffix in EXTENSION_SUFFIXES
    )
    if not os.path.isdir(source) or any(built):
        return False  # a checkout built in place (or installed editable): test it
    root = os.path.realpath(ROOT)
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != root]
    for name in [m for m in sys.modules if m.split(".")[0] == "scenario_uni1"]:
        # The pytest11 entry point may have imported the plugin from the tree.
        origin = os.path.realpath(getattr(sys.modules[name], "__file__", None) or "")
        if origin.startswith(root + os.sep):
            del sys.modules[name]
    importlib.invalidate_caches()
    if importlib.util.find_spec("scenario_uni1") is None:
        pytest.exit(
            "scenario_uni1 is neither built in this source tree (python setup.py build_ext "
            "--inplace) nor installed (pip install .)",
            returncode=4,
        )
    # Children (python -c, python -m) put their current directory first on
    # sys.path; PYTHONSAFEPATH (3.11+) keeps it off, older versions run from tests/.
    os.environ["PYTHONSAFEPATH"] = "1"
    if sys.version_info < (3, 11) and os.path.realpath(os.getcwd()) == root:
        os.chdir(os.path.join(ROOT, "tests"))
    return True


SOURCE_TREE_SET_ASIDE = _test_the_installed_package()

# A shell starts a background job with SIGINT ignored, and an ignored signal
# stays ignored across exec: the Ctrl-C tests' children would then never see
# their SIGINT and the tests would hang. Catching it here gives every child
# the default disposition back, so its interpreter installs its own handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import scenario_uni1 as uni1  # noqa: E402  (after the source tree is set aside)

# For a child process's PYTHONPATH: the directory holding the package under test
# (this checkout, or site-packages when testing an installed package).
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.realpath(uni1.__file__)))

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


def open_fds() -> int:
    """File descriptors open in this process (Linux)."""
    return len(os.listdir("/proc/self/fd"))


def connection_inodes(emu) -> set:
    """The socket inodes of this process's TCP connections to one of the emulator's
    ports, i.e. the client side of its connections (the emulator's own sockets have
    those ports as local port). The same inode means the same connection. Linux
    only: /proc/self/fd and /proc/net/tcp."""
    ports = {emu.port, emu.cdn_port, emu.cdn2_port}
    client_inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if int(cols[2].rsplit(":", 1)[1], 16) in ports:
                client_inodes.add(cols[9])
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in client_inodes:
            found.add(target[8:-1])
    return found


def connections_to(emu) -> int:
    """How many connections this process holds to the emulator (see connection_inodes)."""
    return len(connection_inodes(emu))


def run_in_fork(work, alarm: int | None = None) -> tuple[int, str]:
    """Runs work() in a forked child; (wait status, str(work()) or the exception it raised).

    The child never returns into pytest (os._exit). alarm: seconds after which
    SIGALRM ends a child stuck on a lock instead of hanging the suite.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if alarm is not None:
                signal.alarm(alarm)
            os.write(write, str(work()).encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        said = f.read()
    _, status = os.waitpid(pid, 0)
    return status, said


def journal_item(prompt: str) -> tuple[str, dict]:
    """(fingerprint, recorded request) of a text-only item of a client with no
    project, as the journal names it (the product's own item_key)."""
    from types import SimpleNamespace

    from scenario_uni1._journal_engine import item_key

    return item_key(SimpleNamespace(project_id=None), prompt, None, [], None, "png", False)
