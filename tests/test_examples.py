"""Smoke tests: every example's main script runs to success in a subprocess.

Each runs as a user would run it (``python <script>``) from a temporary
directory, with ``CELERIAC_DATABASE_URL`` pointing there, so nothing is left
behind in the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 90


@dataclass(frozen=True)
class Example:
    folder: str
    script: str
    #: lines (or parts of lines) the output must contain
    expected: tuple[str, ...]


CASES = [
    Example(
        "operations_service",
        "client.py",
        (
            "POST /operations -> 202 IN_PROGRESS",
            "REQUESTING_PAUSE",
            "PAUSED with ",
            "done, PAUSED",
            "-> 409 cannot pause workflow",
            "-> 200 IN_PROGRESS",
            "COMPLETED, 5/5 steps done (100%)",
            "result: {'checksum': 397, 'loaded': 10, 'published': True}",
            "-> 409 cannot cancel workflow",
            "-> 404 no workflow with id 'no-such-operation'",
            "end to end: OK",
        ),
    ),
    Example(
        "parent_children_progress",
        "main.py",
        (
            "chunks done 0/6",
            "100%  COMPLETED",
            "primes below 120000: 11301 (checked here: 11301)",
            "progress inside running chunks was visible: True",
        ),
    ),
    Example(
        "batch_chord_progress",
        "main.py",
        (
            "25/25 tasks completed, 0 running, status COMPLETED",
            "final status: COMPLETED, result: "
            "{'parts': 24, 'imported': 11954, 'rejected': 46}",
        ),
    ),
    Example(
        "new_device_login",
        "main.py",
        (
            "outcome: alice on phone-91c2: challenge with 2FA (0.91)",
            "state: COMPLETED",
            "logins.score           SUCCEEDED  3 attempt(s)",
            "#1 RETRY",
            "ConnectionError: 503 from scoring API (call 2)",
            "#3 SUCCEEDED",
            "logins.alert_security  SKIPPED    0 attempt(s)",
        ),
    ),
    Example(
        "dynamic_fanout",
        "main.py",
        (
            "2 nodes at submit",
            "PAUSED with ",
            "nothing ran while paused: True",
            "fanout.list_accounts replaced itself with 41 nodes "
            "(['REPLACED'] then SUCCEEDED)",
            "report: 40 accounts, total balance 960",
            "every task ran once: True",
        ),
    ),
    Example(
        "canvas_tour",
        "main.py",
        (
            "celeriac: [[0, 2], [4, 6], [8, 10]]  same",
            "celeriac: {'result': 4, 'link got': [4]}  same",
            "all 10 canvases agree with native Celery",
        ),
    ),
]


def run_example(example: Example, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["CELERIAC_DATABASE_URL"] = f"sqlite:///{tmp_path / 'example.db'}"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    env.pop("CELERIAC_APP", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / example.folder / example.script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_every_example_folder_is_tested():
    folders = {path.parent.name for path in EXAMPLES.glob("*/README.md")}
    assert folders == {example.folder for example in CASES}


@pytest.mark.parametrize("example", CASES, ids=lambda example: example.folder)
def test_example_runs(example: Example, tmp_path: Path):
    done = run_example(example, tmp_path)
    report = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.returncode == 0, report
    for expected in example.expected:
        assert expected in done.stdout, f"missing {expected!r}\n{report}"
