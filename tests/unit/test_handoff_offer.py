"""A worker that refused a node's successor asks first the next time.

``Offer`` remembers, per process, the tasks whose last successor it could
not run itself: the next success of such a task does not claim its
successor before asking (``Handoff.claims_early``), so a chain whose steps
go to another queue does not claim and undo every hop.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

from celery import Celery

from celeriac.engine import handoff
from celeriac.records import Dispatch, Lease

LEASE = Lease("w1-1", "w1", 1, datetime(2026, 12, 7, tzinfo=UTC))


def test_a_refusal_makes_the_next_offer_after_that_task_ask_first() -> None:
    app = Celery(f"offer-{uuid.uuid4().hex}", set_as_current=False)
    app.conf.task_default_queue = "here"

    @app.task(name="t.step", shared=False)
    def step(value: int) -> int:
        return value

    after = f"t.before-{uuid.uuid4().hex}"  # this test's own task name
    carrier = SimpleNamespace(
        task=after,
        hostname="w1",
        delivery_info={"exchange": "", "routing_key": "here"},
        timelimit=None,
    )

    def successor(**options: str) -> Dispatch:
        signature = {"task": "t.step", "args": [], "kwargs": {}, "options": options}
        return Dispatch(uuid.uuid4().hex, "wf", signature, (1,), 0, "TASK")

    first = handoff.Offer(app, carrier, LEASE)
    assert first.handoff.claims_early
    assert not first.handoff.accepts(successor(queue="elsewhere"))

    second = handoff.Offer(app, carrier, LEASE)
    assert not second.handoff.claims_early
    assert second.handoff.accepts(successor())

    assert handoff.Offer(app, carrier, LEASE).handoff.claims_early
