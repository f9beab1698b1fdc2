"""Typing: mypy --strict on the README's examples (tests/typing/check_readme.py).

The stubs themselves are checked against the extension by mypy.stubtest in
CI (scripts/dev.sh test: about 10 s, too slow to repeat here); this runs the
cheap half, and proves the check can fail.
"""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("mypy", reason="mypy is in the test extra")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "typing"))
import check_readme  # noqa: E402


def test_readme_examples_pass_mypy_strict():
    readme = os.path.join(check_readme.ROOT, "README.md")
    assert len(check_readme.readme_blocks(readme)) >= 5
    status, report = check_readme.check(readme)
    assert status == 0, report
    assert "Success: no issues found" in report


def test_the_readme_check_catches_a_wrong_example(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "```python\n"
        "import scenario_uni1 as uni1\n"
        "job = uni1.generate('x')\n"
        "images = job.images()\n"
        "name: int = images[0].mime_type\n"  # a str
        "job.wait(timeout='soon')\n"
        "```\n",
        encoding="utf-8",
    )
    status, report = check_readme.check(str(readme))
    assert status == 1
    assert 'expression has type "str", variable has type "int"' in report
    assert 'Argument "timeout" to "wait" of "Job" has incompatible type "str"' in report
