"""Values stored exactly as Celery's JSON serializer carries them.

Results, arguments, signatures and metadata are stored as the text kombu's
JSON serializer (Celery's default) writes for them and read back with its
loader, on every database: NaN, the infinities, NUL characters, integers of
any size and the order of dict keys come back as they went in. A value that
serializer cannot encode is refused with :class:`Unencodable`, which names
where in the value the culprit sits (``args[1]["x"][3]``).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from kombu.exceptions import EncodeError
from kombu.utils.json import JSONEncoder, loads

#: The default of the engine option ``max_result_bytes``: 10 MiB.
MAX_RESULT_BYTES = 10 * 1024 * 1024
#: What ``json`` accepts as dict keys (it writes them as strings).
_KEY_TYPES = (str, int, float, bool, type(None))
#: What kombu's serializer raises for a value it cannot encode.
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)
#: What kombu's ``dumps`` makes for each value, made once: the same text,
#: without a new encoder per value (a node's signature, a result).
_ENCODER = JSONEncoder()
#: The keys of kombu's envelope for a typed value, which its loader unpacks.
_ENVELOPE = {"__type__", "__value__"}


class Unencodable(ValueError):
    """A value Celery's JSON serializer cannot encode.

    ``keys`` lead from the whole value to the culprit; ``path`` spells them
    after the value's name (``args[1]["x"][3]``).
    """

    def __init__(self, root: str, keys: tuple[Any, ...], reason: str) -> None:
        self.keys = keys
        self.path = root + "".join(map(subscript, keys))
        self.reason = reason
        super().__init__(f"{self.path} {reason}")


class Encoded(str):
    """Text :func:`encode` wrote already: a JSON column stores it as it is.

    A large canvas is encoded once, when it is checked, not again to be stored.
    """


class UndecodableValue(ValueError):
    """A stored value that is not the text Celery's JSON serializer writes."""


class ResultTooLarge(ValueError):
    """A task's result is larger, as JSON text, than ``max_result_bytes``."""


def encode(value: Any, root: str = "value") -> str:
    """The text Celery's JSON serializer writes for ``value``.

    Raises:
        Unencodable: ``value`` holds something the serializer refuses;
            ``root``, the name of the whole value, starts the path it names.
    """
    try:
        text: str = _ENCODER.encode(value)
    except _ENCODE_ERRORS as exc:
        raise Unencodable(root, *_locate(value, exc)) from exc
    if '"__type__"' in text:  # rare: only then can the loader refuse it
        _check_readable(text, value, root)
    return text


def check_result(result: Any, max_bytes: int) -> None:
    """Whether a task's result can be stored, as :func:`encode` writes it.

    Raises:
        EncodeError: Celery's JSON serializer cannot encode ``result`` (what
            native Celery fails such a task with); the message names the path.
        ResultTooLarge: its text is longer than ``max_bytes``.
    """
    try:
        size = len(encode(result, "result").encode())
    except Unencodable as exc:
        raise EncodeError(f"the task's result cannot be stored: {exc}") from exc
    if size > max_bytes:
        raise ResultTooLarge(
            f"the task's result is {size:,} bytes as JSON, more than "
            f"max_result_bytes ({max_bytes:,})"
        )


def decode(text: str) -> Any:
    """The value ``text`` (written by :func:`encode`) stands for.

    Raises:
        UndecodableValue: ``text`` is not such text (a corrupted row).
    """
    try:
        return loads(text)
    except Exception as exc:  # the loader's type decoders raise anything
        raise UndecodableValue(f"a stored value cannot be read: {exc}") from exc


def subscript(key: Any) -> str:
    """``[3]`` for a list index, ``["x"]`` for a string key."""
    if isinstance(key, str):
        return f"[{json.dumps(key, ensure_ascii=False)}]"
    return f"[{key!r}]"


_Found = tuple[tuple[Any, ...], str]


def _locate(value: Any, error: BaseException) -> _Found:
    """The keys to the part of ``value`` that raised ``error``, and why."""
    if isinstance(error, RecursionError):
        return (), "is nested too deeply to be encoded"
    return _find(value, (), ()) or ((), _reason(value, error))


def _find(
    value: Any, keys: tuple[Any, ...], ancestors: tuple[int, ...]
) -> _Found | None:
    """The first part of ``value`` the serializer refuses, if it is inside."""
    if id(value) in ancestors:
        return keys, "contains itself (a circular reference)"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, _KEY_TYPES):
                return (*keys, key), (
                    f"is under a key of type {type(key).__name__}; "
                    "keys must be str, int, float, bool or None"
                )
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return None
    inside = (*ancestors, id(value))
    for key, item in items:
        try:
            _ENCODER.encode(item)
        except _ENCODE_ERRORS as exc:
            where = (*keys, key)
            return _find(item, where, inside) or (where, _reason(item, exc))
    return None


def _check_readable(text: str, value: Any, root: str) -> None:
    """Refuse a dict shaped as kombu's envelope that its loader cannot unpack.

    ``{"__type__": "nope", "__value__": 1}`` encodes, but Celery's JSON
    loader (and so a worker receiving it) cannot read it back.
    """
    try:
        loads(text)
    except Exception as exc:
        keys = _unreadable(value, ()) or ()
        raise Unencodable(
            root,
            keys,
            'has the keys "__type__" and "__value__" of kombu\'s typed values, '
            f"and Celery's JSON loader cannot read it back ({exc})",
        ) from exc


def _unreadable(value: Any, keys: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The keys to the first envelope in ``value`` the loader cannot unpack."""
    if isinstance(value, dict):
        if value.keys() == _ENVELOPE:
            try:
                loads(_ENCODER.encode(value))
            except Exception:
                return keys
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    else:
        return None
    for key, item in items:
        found = _unreadable(item, (*keys, key))
        if found is not None:
            return found
    return None


def _reason(value: Any, error: BaseException) -> str:
    if isinstance(error, TypeError):
        return (
            f"is a {type(value).__name__}, which Celery's JSON serializer cannot encode"
        )
    return f"cannot be encoded: {error}"


class ExactJson(sa.types.TypeDecorator[Any]):
    """A column holding one value as Celery's JSON text (``TEXT`` in SQL).

    Python's None is SQL NULL. JSONB is not used: it refuses NaN and NUL
    characters, and reorders dict keys.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None or isinstance(value, Encoded):
            return value
        return encode(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        return None if value is None else decode(value)


#: Starts the stored form of a text that had to be escaped (see ExactText).
_ESCAPED = "\x01"


class ExactText(sa.types.TypeDecorator[str]):
    r"""A column holding text exactly, NUL characters included (``TEXT`` in SQL).

    PostgreSQL's text cannot hold NUL, nor a lone surrogate. A text with
    either, or that starts with ``\x01``, is stored as ``\x01`` followed by
    its JSON string (``"a\u0000b"``); any other text is stored as it is, so
    SQL reads it plainly. The same on every database.
    """

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        if value is None or not _needs_escape(value):
            return value
        return _ESCAPED + json.dumps(value)

    def process_result_value(
        self, value: str | None, dialect: sa.Dialect
    ) -> str | None:
        if value is None or not value.startswith(_ESCAPED):
            return value
        text = decode(value[len(_ESCAPED) :])
        if not isinstance(text, str):
            raise UndecodableValue(f"a stored text cannot be read: {value!r}")
        return text


def _needs_escape(text: str) -> bool:
    if "\x00" in text or text.startswith(_ESCAPED):
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False
