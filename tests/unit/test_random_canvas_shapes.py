"""The random canvases' generator leaves out what Celery itself cannot build."""

from __future__ import annotations

from tests.random_canvases import Chain, Extras, Group, Task, celery_builds


def test_a_linked_chain_ending_in_a_group_folded_twice_is_left_out() -> None:
    # chain(chain(chain(a, group(b, c)).link(cb)), d): Celery 5.7 raises
    # AttributeError ('dict' object has no attribute 'clone')
    linked = Chain((Task(), Group((Task(), Task()))), Extras(link=True))
    assert not celery_builds(Chain((Chain((linked,)), Task())))


def test_the_same_chain_without_its_callback_is_kept() -> None:
    plain = Chain((Task(), Group((Task(), Task()))))
    assert celery_builds(Chain((Chain((plain,)), Task())))
