"""The docs match the code: every self-contained Python block of the docs runs.

A block is self-contained when every name it reads at the top level it also
defines or imports (a fragment such as ``workflow.pause()`` is not), and it
needs no server: blocks that name a Redis broker or import ``proj``, the
quick start's worker module, run in ``scripts/quickstart-check`` instead,
with a real Redis and worker. Each block runs in a subprocess, in a
temporary directory, as a user would paste it into a file.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: Blocks that need a server (or its settings from the environment); the
#: quick start's run in scripts/quickstart-check instead.
NEEDS_A_SERVER = ("redis://", "amqp://", "from proj import", "postgresql", "environ[")


def free_names(source: str) -> set[str]:
    """Names the block reads but neither defines, imports nor gets from builtins."""
    tree = ast.parse(source)
    defined = set(dir(builtins))
    read = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            defined.add(node.name)
            defined.update(
                arg.arg for arg in ast.walk(node.args) if isinstance(arg, ast.arg)
            )
        elif isinstance(node, ast.alias):
            defined.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.comprehension | ast.For):
            defined.update(
                name.id for name in ast.walk(node.target) if isinstance(name, ast.Name)
            )
    return read - defined


def blocks() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, source in enumerate(FENCE.findall(page.read_text()), 1):
            if any(marker in source for marker in NEEDS_A_SERVER):
                continue
            if free_names(source):
                continue
            found.append((f"{page.relative_to(ROOT)}#{number}", source))
    return found


BLOCKS = blocks()


def test_some_blocks_are_self_contained():
    # the quick start's section 3, at least: a script on the embedded worker
    assert any(name.startswith("docs/quickstart.md") for name, _ in BLOCKS), BLOCKS


@pytest.mark.parametrize("source", [s for _, s in BLOCKS], ids=[n for n, _ in BLOCKS])
def test_a_self_contained_block_runs(tmp_path, source):
    script = tmp_path / "block.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERIAC_")}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
