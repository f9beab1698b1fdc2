"""Build script for the scenario_uni1._core extension.

Finds libcurl, cJSON and libcrypto with pkg-config (curl-config as a fallback
for curl) and builds one abi3 extension from csrc/core (plain C) and
csrc/binding (CPython). Environment switches:
  UNI1_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  UNI1_DEBUG=1      -O0 -g3, assertions on
  UNI1_WERROR=1     -Werror (CI)
  UNI1_PKG_CONFIG_STATIC=1  link libcurl, cJSON and libcrypto statically
                    (pkg-config --static; the macOS wheel, see
                    scripts/wheel_deps.sh)
"""

import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup

try:
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # pragma: no cover - wheel is part of the build requirements
    _bdist_wheel = None

NEEDS = (
    "scenario_uni1 needs the development files of libcurl, cJSON and OpenSSL's libcrypto, "
    "found through pkg-config."
)
# (name shown, how to install) per family of systems.
HINTS = {
    "debian": (
        "Debian or Ubuntu",
        "sudo apt-get install libcurl4-openssl-dev libcjson-dev libssl-dev pkg-config",
    ),
    "fedora": (
        "Fedora, RHEL or CentOS (cjson-devel is in EPEL on RHEL)",
        "sudo dnf install libcurl-devel cjson-devel openssl-devel pkgconf-pkg-config",
    ),
    "alpine": ("Alpine", "apk add curl-dev cjson-dev openssl-dev pkgconf"),
    "macos": (
        "macOS (Homebrew; its curl and openssl@3 are keg-only)",
        "brew install curl cjson openssl@3 pkg-config\n"
        '    export PKG_CONFIG_PATH="$(brew --prefix curl)/lib/pkgconfig:'
        '$(brew --prefix openssl@3)/lib/pkgconfig:$PKG_CONFIG_PATH"',
    ),
    "windows": (
        "Windows (vcpkg; the core builds with MinGW-w64)",
        "vcpkg install curl cjson openssl pkgconf --triplet x64-mingw-dynamic\n"
        "    set PKG_CONFIG_PATH=%VCPKG_ROOT%\\installed\\x64-mingw-dynamic\\lib\\pkgconfig",
    ),
}
_OS_FAMILIES = {
    "debian": "debian",
    "ubuntu": "debian",
    "fedora": "fedora",
    "rhel": "fedora",
    "centos": "fedora",
    "alpine": "alpine",
}


def _os_family(platform, os_release):
    """Which HINTS entry fits: platform is sys.platform, os_release the text
    of /etc/os-release (Linux only; ID first, then ID_LIKE)."""
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin"):
        return "windows"
    fields = {}
    for line in (os_release or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    for word in [fields.get("ID", "")] + fields.get("ID_LIKE", "").split():
        if word.lower() in _OS_FAMILIES:
            return _OS_FAMILIES[word.lower()]
    return None


def _read_os_release():
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except OSError:
            continue
    return ""


def missing_package_hint(platform=None, os_release=None):
    """What to install on this system (or the one described) for the build."""
    if platform is None:
        platform = sys.platform
    if os_release is None and platform.startswith("linux"):
        os_release = _read_os_release()
    family = _os_family(platform, os_release)
    if family:
        families = [family]
    elif platform.startswith("linux"):
        families = ["debian", "fedora", "alpine"]
    else:
        families = list(HINTS)
    lines = [NEEDS]
    for key in families:
        name, command = HINTS[key]
        lines.append(f"On {name}:\n    {command}")
    return "\n".join(lines) + "\n"


def _run(cmd):
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def _pkg_config(name):
    tool = os.environ.get("PKG_CONFIG", "pkg-config")
    if shutil.which(tool) is None:
        return None
    cflags = _run([tool, "--cflags", name])
    static = ["--static"] if os.environ.get("UNI1_PKG_CONFIG_STATIC") else []
    libs = _run([tool, "--libs", *static, name])
    if cflags is None or libs is None:
        return None
    return shlex.split(cflags), shlex.split(libs)


def _find(name, fallback=None):
    found = _pkg_config(name)
    if found is None and fallback is not None:
        found = fallback()
    if found is None:
        sys.stderr.write(
            f"\nerror: could not find {name!r} with pkg-config.\n{missing_package_hint()}\n"
        )
        raise SystemExit(1)
    return found


def _curl_config():
    if shutil.which("curl-config") is None:
        return None
    cflags = _run(["curl-config", "--cflags"])
    libs = _run(["curl-config", "--libs"])
    if cflags is None or libs is None:
        return None
    return shlex.split(cflags), shlex.split(libs)


def _flags():
    compile_args, link_args = [], []
    for name, fallback in (("libcurl", _curl_config), ("libcjson", None), ("libcrypto", None)):
        cflags, libs = _find(name, fallback)
        compile_args += cflags
        link_args += libs
    return compile_args, link_args


def _extension():
    sources = sorted(glob.glob("csrc/core/*.c")) + sorted(glob.glob("csrc/binding/*.c"))
    compile_args, link_args = _flags()
    compile_args += ["-std=c11", "-Wall", "-Wextra", "-fvisibility=hidden", "-D_GNU_SOURCE"]
    if sys.platform == "win32":
        # The core's format checks assume MinGW's C99 printf (platform.h).
        compile_args.append("-D__USE_MINGW_ANSI_STDIO=1")
        link_args.append("-lws2_32")
    if os.environ.get("UNI1_WERROR"):
        compile_args.append("-Werror")
    if os.environ.get("UNI1_DEBUG") or os.environ.get("UNI1_SANITIZE"):
        compile_args += ["-O0", "-g3", "-UNDEBUG"]
    if os.environ.get("UNI1_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
               "-fno-sanitize-recover=undefined"]
        compile_args += san
        link_args += san
    return Extension(
        "scenario_uni1._core",
        sources=sources,
        include_dirs=["csrc/core", "csrc/binding"],
        define_macros=[("Py_LIMITED_API", "0x030A0000")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=glob.glob("csrc/**/*.h", recursive=True),
        py_limited_api=True,
    )


cmdclass = {}
if _bdist_wheel is not None:

    class bdist_wheel_abi3(_bdist_wheel):
        def finalize_options(self):
            self.py_limited_api = "cp310"
            super().finalize_options()

    cmdclass["bdist_wheel"] = bdist_wheel_abi3

# Metadata lives in pyproject.toml; an sdist or egg_info run still needs no compiler.
needs_ext = not any(arg in sys.argv for arg in ("sdist", "egg_info", "dist_info", "--version"))
setup(ext_modules=[_extension()] if needs_ext else [], cmdclass=cmdclass)
