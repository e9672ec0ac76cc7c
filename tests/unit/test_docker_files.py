"""docker/: what can be checked without a Docker engine.

The compose file parses and hangs together, the Dockerfile copies only paths
that exist and that its ignore file lets through, and the example app module
runs its workflow (on the in-memory broker and SQLite, in a subprocess).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's dependencies and their conditions (short or long syntax)."""
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return dict.fromkeys(value, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started")
        for name, spec in value.items()
    }


def command(service: dict[str, Any]) -> list[str]:
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    return found


def copy_sources(arguments: str) -> list[str] | None:
    """The sources of a COPY/ADD from the build context (None: from a stage)."""
    if arguments.lstrip().startswith("["):
        words = json.loads(arguments)
    else:
        words = shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    if any(flag.startswith("--from=") for flag in flags):
        return None
    paths = [word for word in words if not word.startswith("--")]
    assert len(paths) >= 2, f"COPY needs a source and a destination: {arguments}"
    return paths[:-1]


def build_context() -> Path:
    """The one context every service that builds docker/Dockerfile uses."""
    contexts: set[Path] = set()
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        if isinstance(build, str):
            build = {"context": build}
        context = (DOCKER / build.get("context", ".")).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{name}: no Dockerfile at {dockerfile}"
        if dockerfile.resolve() == DOCKERFILE.resolve():
            contexts.add(context)
    assert len(contexts) == 1, f"docker/Dockerfile is built with contexts {contexts}"
    return contexts.pop()


def ignore_patterns() -> list[str]:
    """docker/Dockerfile.dockerignore (BuildKit reads it for docker/Dockerfile)."""
    path = DOCKER / "Dockerfile.dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore glob as a regex: ``*`` stays within one path segment."""
    parts = re.split(r"(\*\*/|\*|\?)", glob.strip("/"))
    table = {"**/": "(?:.*/)?", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(table.get(part, re.escape(part)) for part in parts))


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: the last matching line wins.

    A line that matches a parent directory matches everything inside it.
    """
    segments = path.strip("/").split("/")
    candidates = ["/".join(segments[:i]) for i in range(1, len(segments) + 1)]
    result = False
    for line in patterns:
        keep = line.startswith("!")
        regex = _pattern(line.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not keep
    return result


# -- compose.yaml -------------------------------------------------------------------


def test_compose_file_has_the_servers_a_migration_two_workers_and_a_producer():
    found = services()
    assert {"postgres", "redis", "migrate", "producer"} <= set(found)
    assert command(found["migrate"]) == ["celeriac", "db", "upgrade"]
    workers = [
        name
        for name, service in found.items()
        if command(service)[:4] == ["celery", "-A", "example_app", "worker"]
    ]
    assert len(workers) >= 2
    # two workers on one broker need names of their own
    names = [
        command(found[name])[command(found[name]).index("-n") + 1] for name in workers
    ]
    assert len(set(names)) == len(names)
    assert "example_app" in " ".join(command(found["producer"]))


def test_depends_on_names_only_services_that_exist():
    found = services()
    for name, service in found.items():
        for dependency, condition in depends_on(service).items():
            assert dependency in found, f"{name} depends on unknown {dependency!r}"
            assert condition in CONDITIONS, f"{name}: condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in found[dependency], (
                    f"{name} waits for {dependency} to be healthy, which has no check"
                )


def test_depends_on_has_no_cycle():
    found = services()
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dependency in depends_on(found[name]):
            visit(dependency, (*path, name))
        done.add(name)

    for name in found:
        visit(name, ())


def test_every_celeriac_container_gets_the_broker_and_the_database():
    for name, service in services().items():
        if service.get("image", "").startswith(("postgres", "redis")):
            continue
        environment = service.get("environment") or {}
        assert {"CELERY_BROKER_URL", "CELERIAC_DATABASE_URL"} <= set(environment), name
        assert environment["CELERIAC_DATABASE_URL"].startswith("postgresql")


def test_named_volumes_are_declared():
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


# -- Dockerfile -----------------------------------------------------------------


def test_every_path_the_dockerfile_copies_exists_in_the_build_context():
    context = build_context()
    assert context == ROOT
    copies = [
        args for keyword, args in instructions(DOCKERFILE) if keyword in ("COPY", "ADD")
    ]
    assert copies
    for arguments in copies:
        for source in copy_sources(arguments) or []:
            matches = list(context.glob(source))
            assert matches, f"COPY {source}: nothing at {context / source}"


def test_the_ignore_file_lets_every_copied_path_through():
    patterns = ignore_patterns()
    for keyword, arguments in instructions(DOCKERFILE):
        if keyword in ("COPY", "ADD"):
            for source in copy_sources(arguments) or []:
                assert not ignored(source, patterns), (
                    f"{source} is left out of the context"
                )
    # and it keeps the bulk out
    assert ignored(".git/config", patterns)
    assert ignored("celeriac/__pycache__/x.pyc", patterns)


def test_the_image_is_python_311_slim_with_the_postgres_and_redis_extras():
    steps = instructions(DOCKERFILE)
    assert steps[0] == ("FROM", "python:3.11-slim")
    installs = [
        args for keyword, args in steps if keyword == "RUN" and "pip install" in args
    ]
    assert any("[postgres,redis]" in args for args in installs)
    entry = [args for keyword, args in steps if keyword == "CMD"]
    assert entry
    assert json.loads(entry[-1])[:4] == ["celery", "-A", "example_app", "worker"]


# -- example_app.py -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_the_example_app_runs_its_workflow(tmp_path: Path) -> None:
    script = (
        "import example_app as ex\n"
        "with ex.engine.embedded_worker(concurrency=2):\n"
        "    workflow = ex.engine.submit(ex.pages(3))\n"
        "    print(workflow.get(timeout=30), ex.expected(3))\n"
    )
    env = {
        **os.environ,
        "CELERY_BROKER_URL": "memory://",
        "CELERIAC_DATABASE_URL": f"sqlite:///{tmp_path / 'example.db'}",
        "PYTHONPATH": os.pathsep.join([str(DOCKER), str(ROOT)]),
    }
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result, expected = run.stdout.split()
    assert result == expected == str(sum(range(30)))
