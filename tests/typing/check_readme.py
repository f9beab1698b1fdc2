"""mypy --strict on the Python examples of README.md, as a reader would run them.

The fenced ```python blocks are joined in order into one module (each block
goes on from the ones before it, as the README reads) and checked with
``mypy --strict``; the package itself is followed silently, so only the
examples are judged. What the README leaves to the reader is supplied in a
short prelude (the list `prompts` of the journal example), and a pytest
example's fixture parameter gets the type the plugin's fixture has.

    python tests/typing/check_readme.py            # exit status of mypy
    python tests/typing/check_readme.py --print    # show the module checked
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRELUDE = """\
# Generated from README.md by tests/typing/check_readme.py; not to be edited.
from scenario_uni1.emulator import Emulator

prompts: list[str] = ["A castle", "A lighthouse"]  # the reader's own list
"""

# pytest fixtures the README's examples take, and their types.
FIXTURES = {"uni1_emulator": "Emulator"}


def readme_blocks(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def _type_fixtures(block: str) -> str:
    def annotate(m: re.Match[str]) -> str:
        params = ", ".join(f"{p}: {FIXTURES[p]}" for p in m.group(2).split(", ") if p)
        return f"def {m.group(1)}({params}) -> None:"

    pattern = r"^def (test_\w+)\(((?:%s)(?:, (?:%s))*)\):" % (
        "|".join(FIXTURES),
        "|".join(FIXTURES),
    )
    return re.sub(pattern, annotate, block, flags=re.M)


def examples_module(readme: str) -> str:
    blocks = readme_blocks(readme)
    if not blocks:
        raise SystemExit(f"no ```python blocks in {readme}")
    parts = [PRELUDE]
    for i, block in enumerate(blocks, 1):
        parts.append(f"# -- README block {i}\n{_type_fixtures(block)}")
    return "\n".join(parts)


def check(readme: str) -> tuple[int, str]:
    """(mypy's exit status, its report) for the examples of `readme`."""
    source = examples_module(readme)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "readme_examples.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        env = dict(os.environ, MYPYPATH=ROOT)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--follow-imports=silent",
            "--no-incremental",
            "--cache-dir",
            os.path.join(tmp, "cache"),
            path,
        ]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False)
    report = (proc.stdout + proc.stderr).replace(os.path.basename(path), "README.md examples")
    return proc.returncode, report


def main(argv: list[str]) -> int:
    readme = os.path.join(ROOT, "README.md")
    if "--print" in argv:
        print(examples_module(readme))
        return 0
    status, report = check(readme)
    print(report, end="")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
