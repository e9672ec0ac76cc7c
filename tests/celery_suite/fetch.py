"""Fetch Celery's sdist and lay out its converted canvas tests in a directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

from tests.celery_suite.convert import convert

CELERY_VERSION = "5.7.0"
#: the sdist's files the suite needs, kept as they are
KEPT = (
    "t/__init__.py",
    "t/canvas_helpers.py",
    "t/integration/__init__.py",
    "t/integration/tasks.py",
    "t/integration/conftest.py",
)
CONVERTED = "t/integration/test_canvas.py"
#: appended to Celery's conftest: the app and worker fixtures of ``fixtures`` win
WORKER_IMPORT = (
    "\nfrom tests.celery_suite.fixtures import celery_app, celery_session_worker\n"
)
PYTEST_INI = """\
[pytest]
python_classes = test_*
xfail_strict = true
markers = flaky
    timeout
    amqp
"""


def cache_directory() -> Path:
    """Where the sdist is kept between runs (outside the repository)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "celeriac" / "celery-suite"


def sdist() -> Path:
    """Celery's sdist, downloaded with pip unless it is in the cache already."""
    cache = cache_directory()
    path = cache / f"celery-{CELERY_VERSION}.tar.gz"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet"]
        command += ["--disable-pip-version-check", "--no-binary", ":all:"]
        command += ["--no-deps", f"celery=={CELERY_VERSION}", "-d", str(cache)]
        subprocess.run(command, check=True)
    return path


def lay_out(directory: Path) -> dict[str, int]:
    """Write the suite into ``directory``; return the conversion's counts."""
    prefix = f"celery-{CELERY_VERSION}/"
    with tarfile.open(sdist()) as archive:
        files = {name: _read(archive, prefix + name) for name in (*KEPT, CONVERTED)}
    converted, counts = convert(files[CONVERTED])
    files[CONVERTED] = converted
    files["t/integration/conftest.py"] += WORKER_IMPORT
    for name, text in files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (directory / "pytest.ini").write_text(PYTEST_INI)
    return counts


def _read(archive: tarfile.TarFile, name: str) -> str:
    member = archive.extractfile(name)
    if member is None:
        raise FileNotFoundError(f"{name} is not a file in Celery's sdist")
    return member.read().decode()
