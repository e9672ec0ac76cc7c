"""The exception an errback is given when recovery rebuilds it from the database."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from celeriac.engine.errbacks import REBUILT_MODULE, rebuilt_exception


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ValueError", ValueError),
        ("KeyError", KeyError),
        ("SoftTimeLimitExceeded", SoftTimeLimitExceeded),
    ],
)
def test_a_builtin_or_celery_exception_is_rebuilt_as_itself(name, cls):
    exc = rebuilt_exception(name, "the message")
    assert type(exc) is cls
    assert exc.args == ("the message",)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("PaymentDeclined", "PaymentDeclined"),  # the user's own class
        ("UnicodeDecodeError", "UnicodeDecodeError"),  # wants five arguments
        ("print", "print"),  # a builtin, but no exception
        ("not a name", "Exception"),
    ],
)
def test_any_other_exception_becomes_a_class_of_its_name(name, expected):
    exc = rebuilt_exception(name, "card 42")
    assert isinstance(exc, Exception)
    assert (type(exc).__name__, type(exc).__module__) == (expected, REBUILT_MODULE)
    assert str(exc) == "card 42"
