"""setup.py's hint when libcurl, cJSON or libcrypto cannot be found: the
install command of the system it runs on (platform and /etc/os-release faked)."""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any

import pytest
import setuptools

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
UBUNTU = "NAME=Ubuntu\nID=ubuntu\nID_LIKE=debian\n"
MINT = 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n'
FEDORA = "NAME=Fedora Linux\nID=fedora\nVERSION_ID=40\n"
ROCKY = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
ALPINE = "NAME=Alpine Linux\nID=alpine\nVERSION_ID=3.20.0\n"
ARCH = "NAME=Arch Linux\nID=arch\n"


@pytest.fixture(scope="module")
def setup_py() -> dict[str, Any]:
    """setup.py's globals, run as for egg_info (no pkg-config, no compiler)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(setuptools, "setup", lambda **kwargs: None)
    mp.setattr(sys, "argv", ["setup.py", "egg_info"])
    try:
        return runpy.run_path(os.path.join(ROOT, "setup.py"))
    finally:
        mp.undo()


@pytest.mark.parametrize(
    ("platform", "os_release", "command"),
    [
        ("linux", DEBIAN, "sudo apt-get install libcurl4-openssl-dev libcjson-dev libssl-dev"),
        ("linux", UBUNTU, "sudo apt-get install libcurl4-openssl-dev"),
        ("linux", MINT, "sudo apt-get install libcurl4-openssl-dev"),
        ("linux", FEDORA, "sudo dnf install libcurl-devel cjson-devel openssl-devel"),
        ("linux", ROCKY, "sudo dnf install libcurl-devel cjson-devel openssl-devel"),
        ("linux", ALPINE, "apk add curl-dev cjson-dev openssl-dev"),
        ("darwin", None, "brew install curl cjson openssl@3 pkg-config"),
        ("win32", None, "vcpkg install curl cjson openssl"),
    ],
)
def test_one_system_one_command(
    setup_py: dict[str, Any], platform: str, os_release: str | None, command: str
) -> None:
    hint = setup_py["missing_package_hint"](platform, os_release)
    assert command in hint
    assert "libcurl, cJSON and OpenSSL" in hint
    # Only the fitting package manager is named.
    managers = ["apt-get", "dnf", "apk add", "brew", "vcpkg"]
    named = [m for m in managers if m in hint]
    assert len(named) == 1, hint


def test_unknown_linux_lists_the_linux_families(setup_py: dict[str, Any]) -> None:
    hint = setup_py["missing_package_hint"]("linux", ARCH)
    for manager in ("apt-get", "dnf", "apk add"):
        assert manager in hint
    assert "brew" not in hint and "vcpkg" not in hint


def test_build_failure_prints_this_systems_hint(
    setup_py: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a user sees: pkg-config finds nothing on (a faked) Alpine."""
    live = setup_py["_find"].__globals__  # run_path returns a copy of these
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(live, "_read_os_release", lambda: ALPINE)
    monkeypatch.setitem(live, "_pkg_config", lambda name: None)
    with pytest.raises(SystemExit) as exc:
        setup_py["_find"]("libcjson")
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "could not find 'libcjson' with pkg-config" in err
    assert "apk add curl-dev cjson-dev openssl-dev pkgconf" in err
    assert "apt-get" not in err
