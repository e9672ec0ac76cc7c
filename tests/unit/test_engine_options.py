"""Engine options: keyword-only, checked when the engine is built, documented once."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from celery import Celery

from celeriac import Engine

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture
def app() -> Celery:
    return Celery("options", broker="memory://localhost/", set_as_current=False)


def options() -> list[str]:
    """The keyword-only parameters of ``Engine``: its options."""
    parameters = inspect.signature(Engine).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]


def test_a_misspelt_option_is_a_type_error_naming_it(app, tmp_path):
    url = f"sqlite:///{tmp_path / 'never.db'}"
    with pytest.raises(TypeError, match="'recovery_dealy'"):
        Engine(app, url, recovery_dealy=2)
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("option", "value", "error", "says"),
    [
        ("recovery_delay", "60", TypeError, "recovery_delay must be a number"),
        ("recovery_interval", True, TypeError, "recovery_interval must be a number"),
        ("recovery_delay", -1, ValueError, "recovery_delay must be at least 0"),
        ("heartbeat_interval", 0, ValueError, "heartbeat_interval must be above 0"),
        ("worker_timeout", None, TypeError, "worker_timeout must be a number"),
        ("max_result_bytes", 1.5, TypeError, "max_result_bytes must be an integer"),
        ("max_result_bytes", 0, ValueError, "max_result_bytes must be at least 1"),
        ("max_replacement_nodes", 0, ValueError, "max_replacement_nodes must be at"),
        ("auto_migrate", "yes", TypeError, "auto_migrate must be True or False"),
        ("on_failure", "halt", ValueError, "on_failure must be one of 'continue'"),
        ("on_failure", 1, TypeError, "on_failure must be a string"),
    ],
)
def test_an_option_of_the_wrong_type_or_range_is_refused_by_name(
    app, tmp_path, option, value, error, says
):
    with pytest.raises(error, match=f"^option {says}"):
        Engine(app, f"sqlite:///{tmp_path / 'never.db'}", **{option: value})
    assert not (tmp_path / "never.db").exists()


def test_the_options_are_keyword_only_with_the_documented_names():
    section = API.read_text().split("#### Engine options", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE)
    assert documented == options()
    with pytest.raises(TypeError):
        Engine(Celery(set_as_current=False), "sqlite://", True)  # type: ignore[misc]


def test_options_given_are_the_options_used(app, tmp_path):
    engine = Engine(
        app,
        f"sqlite:///{tmp_path / 'used.db'}",
        recovery_delay=2,
        recovery_interval=0.5,
        heartbeat_interval=0.25,
        worker_timeout=3,
        max_result_bytes=1000,
        max_replacement_nodes=7,
        on_failure="stop",
    )
    try:
        assert engine.recovery_delay == 2
        assert engine._recovery.interval == 0.5
        assert (engine._liveness.interval, engine._liveness.timeout) == (0.25, 3)
        assert engine.max_result_bytes == 1000
        assert engine.max_replacement_nodes == 7
        assert engine.on_failure == "stop"
    finally:
        engine.close()
