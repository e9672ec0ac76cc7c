"""Run Celery's converted canvas tests natively and through celeriac; print counts.

    python -m tests.celery_suite [--mode both|native|celeriac]
        [--database sqlite|postgres] [--gate] [--ci | -k EXPRESSION] [--keep DIR]

Both runs share one throwaway Redis (broker and result backend), started as
tests/servers.py starts it (or ``CELERIAC_TEST_REDIS_URL``). Exit status: 0,
or 1 when ``--gate`` is given and a test that passes natively fails through
celeriac without a listed difference (or a listing is stale or unknown).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.celery_suite.ci import CI_TESTS
from tests.celery_suite.dispatch import CELERIAC, NATIVE
from tests.celery_suite.fetch import CONVERTED, lay_out
from tests.celery_suite.tally import problems, report, tally
from tests.servers import (
    Server,
    create_database,
    local_postgres,
    local_redis,
    unique_name,
)

ROOT = Path(__file__).resolve().parents[2]
#: seconds one converted test may take before pytest-timeout fails it
TEST_TIMEOUT = 90


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    with _directory(options.keep) as directory:
        counts = lay_out(directory)
        print(f"converted {CONVERTED}: {counts}", flush=True)
        with _server(local_redis, "CELERIAC_TEST_REDIS_URL") as redis:
            env = _environment(redis.url, directory)
            if options.database == "postgres" and options.mode != NATIVE:
                with _server(local_postgres, "CELERIAC_TEST_DATABASE_URL") as pg:
                    env["CELERIAC_DATABASE_URL"] = create_database(
                        pg, unique_name("celeriac_suite")
                    )
                    records = _runs(options, directory, env, redis)
            else:
                records = _runs(options, directory, env, redis)
    if options.mode != "both":
        return 0
    verdicts = tally(records[NATIVE], records[CELERIAC])
    print("\n".join(report(verdicts)))
    found = problems(verdicts)
    for problem in found:
        print(problem)
    if found and not options.gate:
        print("(not gating: run with --gate to fail on these)")
    return 1 if found and options.gate else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="celery-canvas-suite", description=__doc__)
    parser.add_argument("--mode", choices=("both", NATIVE, CELERIAC), default="both")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--gate", action="store_true", help="fail on unexplained failures"
    )
    parser.add_argument("-k", dest="select", help="pytest -k: run only these tests")
    parser.add_argument(
        "--ci",
        action="store_true",
        help="only the tests CI runs (tests/celery_suite/ci.py)",
    )
    parser.add_argument("--keep", type=Path, help="lay the suite out here and keep it")
    return parser


def _runs(
    options: argparse.Namespace, directory: Path, env: dict[str, str], redis: Server
) -> dict[str, dict[str, Any]]:
    modes = (NATIVE, CELERIAC) if options.mode == "both" else (options.mode,)
    tests = [f"{CONVERTED}::{test}" for test in CI_TESTS] if options.ci else [CONVERTED]
    return {
        mode: _run(mode, directory, env, redis, tests, options.select) for mode in modes
    }


def _run(
    mode: str,
    directory: Path,
    env: dict[str, str],
    redis: Server,
    tests: list[str],
    select: str | None,
) -> dict[str, Any]:
    """Run the converted tests in one mode; their records, by node id."""
    _flush(redis.url)
    report_path = directory / f"{mode}.json"
    log_path = directory / f"{mode}.log"
    # --tb=line: Python 3.11's ast.parse can fail on a deep traceback's source
    # ("AST constructor recursion depth mismatch"), and the records need
    # only the one line
    command = [sys.executable, "-m", "pytest", *tests, "-q", "-rN", "--tb=line"]
    command += ["-p", "celery.contrib.pytest", "-p", "tests.celery_suite.recorder"]
    command += ["-p", "no:cacheprovider", f"--timeout={TEST_TIMEOUT}"]
    if select:
        command += ["-k", select]
    what = CONVERTED if tests == [CONVERTED] else f"{len(tests)} tests of {CONVERTED}"
    print(f"+ {mode}: pytest {what} (log: {log_path})", flush=True)
    run_env = {
        **env,
        "CELERIAC_SUITE_MODE": mode,
        "CELERIAC_SUITE_REPORT": str(report_path),
    }
    with log_path.open("wb") as log:
        subprocess.run(
            command, cwd=directory, env=run_env, stdout=log, stderr=subprocess.STDOUT
        )
    print(log_path.read_text().rstrip().splitlines()[-1], flush=True)
    records: dict[str, Any] = json.loads(report_path.read_text())
    return records


def _environment(redis_url: str, directory: Path) -> dict[str, str]:
    """Celery's suite reads its broker, backend and Redis from the environment."""
    host, _, port = redis_url.removeprefix("redis://").partition("/")[0].partition(":")
    path = os.pathsep.join(
        filter(None, [str(ROOT), str(directory), os.environ.get("PYTHONPATH")])
    )
    return {
        **os.environ,
        "TEST_BROKER": redis_url,
        "TEST_BACKEND": redis_url,
        "REDIS_HOST": host,
        "REDIS_PORT": port or "6379",
        "PYTHONPATH": path,
    }


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


@contextmanager
def _directory(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="celery-canvas-suite-") as name:
        yield Path(name)


@contextmanager
def _server(local: Any, variable: str) -> Iterator[Server]:
    """The server named by ``variable``, or a throwaway one started here."""
    url = os.environ.get(variable)
    if url:
        yield Server(variable, url)
        return
    try:
        server = local()
        server.start()
    except BaseException as exc:  # tests.servers skips (or fails) the test
        raise SystemExit(f"celery-canvas-suite: no server: {exc}") from None
    try:
        yield server
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
