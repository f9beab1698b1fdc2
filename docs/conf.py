"""Sphinx configuration of the scenario_uni1 documentation site.

Build:   sphinx-build -W --keep-going -n -b html docs build/docs
Examples (run against the emulator):   sphinx-build -W --keep-going -b doctest docs build/doctest
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent / "_ext"))
if os.environ.get("UNI1_DOCS_FROM_TREE"):  # an in-place build (setup.py build_ext --inplace)
    sys.path.insert(0, str(ROOT))

import scenario_uni1  # noqa: E402

project = "scenario_uni1"
author = "scenario_uni1 developers"
copyright = "scenario_uni1 developers"  # noqa: A001 - Sphinx's name
release = version = scenario_uni1.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
    "uni1_docs",
]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
root_doc = "index"
html_theme = "alabaster"
html_title = f"scenario_uni1 {release}"
# Every reference must resolve (sphinx-build -n): a renamed class or method
# breaks the build instead of leaving a dead link.
nitpicky = True

# Python's own inventory from Debian's python3-doc: CI has no internet, and a
# link to the standard library must resolve all the same.
_PY_INV = "/usr/share/doc/python3/html/objects.inv"
intersphinx_mapping = {"python": ("https://docs.python.org/3", _PY_INV)}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

# The glue's string annotations name classes as their modules import them;
# uni1_docs resolves these bare names (autodoc_type_aliases would, but Sphinx
# then renders list["Path"] with a class of its own that links nowhere).
uni1_bare_names = {
    "Client": "scenario_uni1.Client",
    "Job": "scenario_uni1.Job",
    "Generation": "scenario_uni1.Generation",
    "Image": "scenario_uni1.Image",
    "GenerateMany": "scenario_uni1._many.GenerateMany",
    "AsCompleted": "scenario_uni1._many.AsCompleted",
    "Path": "pathlib.Path",
}

# -- examples: every code block of this site runs against the emulator -------------------------
# sphinx.ext.doctest runs each page's groups with this setup: a fresh emulator
# (jobs take 0.2 s), the environment a user sets (SCENARIO_BASE_URL and the
# credentials, so uni1.Client() and the module-level functions find it), and a
# scratch directory holding the input files the examples name.
doctest_global_setup = r'''
import os as _os, shutil as _shutil, subprocess as _subprocess, sys as _sys, tempfile as _tempfile
import scenario_uni1 as uni1
from scenario_uni1.emulator import Emulator as _Emulator

_uni1_emu = _Emulator(job_duration=0.2).start()
_uni1_saved_env = {k: _os.environ.get(k) for k in _uni1_emu.env()}
_os.environ.update(_uni1_emu.env())
uni1._reset_default_client()
_uni1_cwd = _os.getcwd()
_uni1_tmp = _tempfile.mkdtemp(prefix="uni1-docs-")
_os.chdir(_uni1_tmp)

def _uni1_inputs():
    from PIL import Image as _PIL
    for name, size, color in (("ref.png", (64, 48), "navy"), ("day.png", (96, 64), "skyblue"),
                              ("style.jpg", (64, 64), "orange"), ("photo.png", (32, 32), "green")):
        _PIL.new("RGB", size, color).save(name)
_uni1_inputs()

def _uni1_sh(script):
    """Runs a shell example: bash -e, in the scratch directory, this venv's tools first."""
    env = dict(_os.environ, PATH=_os.path.dirname(_sys.executable) + _os.pathsep + _os.environ["PATH"])
    done = _subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env,
                           capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}\n{done.stdout}\n{done.stderr}")
'''
doctest_global_cleanup = r"""
uni1._reset_default_client()
_uni1_emu.stop()
for _k, _v in _uni1_saved_env.items():
    if _v is None:
        _os.environ.pop(_k, None)
    else:
        _os.environ[_k] = _v
_os.chdir(_uni1_cwd)
_shutil.rmtree(_uni1_tmp, ignore_errors=True)
"""
