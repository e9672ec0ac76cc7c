"""The HTTP API under /api/v1, on a real engine, database and worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import chain, group
from starlette.testclient import TestClient

from celeriac.storage.schema import events
from celeriac.web import create_app
from celeriac.web.auth import Credentials
from celeriac.web.openapi import document
from tests.waiting import wait_for
from tests.web.conftest import csrf

DOCS = Path(__file__).parents[2] / "docs"


def details(engine, workflow_id: str) -> list[str]:
    """The details of a workflow's own events (not its nodes'), in order."""
    query = (
        sa.select(events.c.detail)
        .where(events.c.workflow_id == workflow_id, events.c.node_id.is_(None))
        .order_by(events.c.id)
    )
    with engine._db.connect() as conn:
        return list(conn.execute(query).scalars())


def test_list_filters_and_keyset_pages(engine, tasks, client):
    made = [engine.submit(tasks.add.s(i, i), name=f"n{i % 2}") for i in range(5)]
    engine.cancel(made[0].id)

    first = client.get("/api/v1/workflows", params={"limit": 2}).json()
    assert [w["id"] for w in first["workflows"]] == [made[4].id, made[3].id]
    second = client.get(
        "/api/v1/workflows", params={"limit": 2, "after": first["next"]}
    ).json()
    assert [w["id"] for w in second["workflows"]] == [made[2].id, made[1].id]
    last = client.get(
        "/api/v1/workflows", params={"limit": 2, "after": second["next"]}
    ).json()
    assert [w["id"] for w in last["workflows"]] == [made[0].id]
    assert last["next"] is None

    named = client.get("/api/v1/workflows", params={"name": "n1"}).json()
    assert {w["id"] for w in named["workflows"]} == {made[1].id, made[3].id}
    cancelled = client.get("/api/v1/workflows", params={"state": "CANCELLED"}).json()
    assert [w["id"] for w in cancelled["workflows"]] == [made[0].id]
    assert cancelled["counts"] == {"CANCELLED": 1, "IN_PROGRESS": 4}
    prefix = client.get("/api/v1/workflows", params={"id": made[2].id[:12]}).json()
    assert [w["id"] for w in prefix["workflows"]] == [made[2].id]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = client.get("/api/v1/workflows", params={"since": future}).json()
    assert later == {"workflows": [], "next": None, "counts": {}}
    earlier = client.get("/api/v1/workflows", params={"before": future}).json()
    assert len(earlier["workflows"]) == 5


def test_failed_node_filter_and_one_workflow(engine, tasks, client, worker):
    failing = engine.submit(group(tasks.add.s(1, 1), tasks.boom.s()), name="bad")
    fine = engine.submit(tasks.add.s(2, 2), name="good")
    wait_for(lambda: failing.state == "FAILED" and fine.state == "COMPLETED")

    found = client.get("/api/v1/workflows", params={"failed": "1"}).json()
    assert [w["id"] for w in found["workflows"]] == [failing.id]

    shown = client.get(f"/api/v1/workflows/{fine.id[:8]}").json()
    assert shown["id"] == fine.id
    assert shown["state"] == "COMPLETED"
    assert shown["result"] == 4
    assert shown["progress"] == {
        "done": 1,
        "total": 1,
        "failed": 0,
        "running": 0,
        "partial": 0.0,
        "fraction": 1.0,
    }
    progress = client.get(f"/api/v1/workflows/{failing.id}/progress").json()
    assert (progress["id"], progress["failed"], progress["total"]) == (
        failing.id,
        1,
        2,
    )


def test_nodes_come_a_page_at_a_time(engine, tasks, client, worker):
    workflow = engine.submit(
        chain(tasks.add.s(0, 1), *(tasks.add.s(1) for _ in range(4)))
    )
    wait_for(lambda: workflow.state == "COMPLETED")
    first = client.get(f"/api/v1/workflows/{workflow.id}/nodes?limit=3").json()
    rest = client.get(
        f"/api/v1/workflows/{workflow.id}/nodes?limit=3&after={first['next']}"
    ).json()
    assert rest["next"] is None
    listed = first["nodes"] + rest["nodes"]
    assert [n["id"] for n in listed] == [n.id for n in workflow.nodes()]
    assert listed[0]["result"] == 1
    assert listed[0]["attempts"][0]["state"] == "SUCCEEDED"
    assert listed[0]["duration"] >= 0


def test_one_node_with_its_arguments_and_errbacks(engine, tasks, client, worker):
    guarded = tasks.boom.s(3).on_error(tasks.on_error.s())
    workflow = engine.submit(chain(tasks.add.s(1, 2), tasks.add.si(5, 6), guarded))
    wait_for(lambda: workflow.state == "FAILED")
    first, second, failed, errback = workflow.nodes()
    assert workflow.node_arguments(first.id) == ([1, 2], {})
    assert workflow.node_arguments("no-such-node") is None
    base = f"/api/v1/workflows/{workflow.id}/nodes"
    shown = client.get(f"{base}/{second.id}").json()
    assert (shown["args"], shown["kwargs"], shown["result"]) == ([5, 6], {}, 11)
    assert shown["attempts"][0]["state"] == "SUCCEEDED"
    assert shown["errbacks"] == []
    boom = client.get(f"{base}/{failed.id}").json()
    assert (boom["args"], boom["kwargs"]) == ([3], {})
    assert boom["error"] == "ValueError: boom [11, 3]"
    assert [e["id"] for e in boom["errbacks"]] == [errback.id]
    missing = client.get(f"{base}/no-such-node")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": f"workflow {workflow.id} has no node no-such-node"
    }


def test_pause_resume_and_cancel_name_who_asked(engine, tasks, client, worker):
    workflow = engine.submit(chain(tasks.sleep.s(0.3), tasks.sleep.si(0.3, 1)))
    wait_for(lambda: workflow.progress().running == 1)

    paused = client.post(f"/api/v1/workflows/{workflow.id}/pause", headers=csrf(client))
    assert paused.status_code == 200
    assert paused.json()["state"] in ("REQUESTING_PAUSE", "PAUSED")
    wait_for(lambda: workflow.state == "PAUSED")
    resumed = client.post(
        f"/api/v1/workflows/{workflow.id}/resume", headers=csrf(client)
    ).json()
    assert (resumed["state"], resumed["sent"]) == ("IN_PROGRESS", 1)
    cancelled = client.post(
        f"/api/v1/workflows/{workflow.id}/cancel",
        headers=csrf(client),
        json={"terminate": False},
    ).json()
    assert cancelled["state"] == "CANCELLED"
    asked = [d for d in details(engine, workflow.id) if d and " by " in d]
    assert asked == [
        "pause by web:local:testclient",
        "resume by web:local:testclient",
        "cancel by web:local:testclient",
    ]


def test_retry_continues_a_failed_workflow(engine, tasks, client, worker):
    workflow = engine.submit(chain(tasks.add.s(1, 1), tasks.boom.s()))
    wait_for(lambda: workflow.state == "FAILED")
    answer = client.post(f"/api/v1/workflows/{workflow.id}/retry", headers=csrf(client))
    assert answer.status_code == 200
    assert answer.json()["state"] == "IN_PROGRESS"
    wait_for(lambda: workflow.state == "FAILED")
    assert [a.number for a in workflow.nodes()[1].attempts] == [1, 2]
    assert [a.number for a in workflow.nodes()[0].attempts] == [1]


def test_errors_are_404_409_and_422(engine, tasks, client):
    workflow = engine.submit(tasks.add.s(1, 1))
    engine.cancel(workflow.id)
    missing = client.get("/api/v1/workflows/no-such-workflow")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no workflow with id 'no-such-workflow'"}
    unknown = client.post("/api/v1/workflows/no-such/pause", headers=csrf(client))
    assert unknown.status_code == 404
    refused = client.post(
        f"/api/v1/workflows/{workflow.id}/pause", headers=csrf(client)
    )
    assert refused.status_code == 409
    assert "CANCELLED" in refused.json()["error"]
    no_action = client.post(
        f"/api/v1/workflows/{workflow.id}/explode", headers=csrf(client)
    )
    assert no_action.status_code == 404
    for params, named in [
        ({"state": "DONE"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"after": "not-a-cursor"}, "after"),
        ({"failed": "maybe"}, "failed"),
    ]:
        bad = client.get("/api/v1/workflows", params=params)
        assert bad.status_code == 422, params
        assert bad.json()["error"].startswith(f"{named}:")
    bad_body = client.post(
        f"/api/v1/workflows/{workflow.id}/cancel",
        headers=csrf(client),
        json={"terminate": "yes"},
    )
    assert bad_body.status_code == 422
    assert engine.workflow(workflow.id).state == "CANCELLED"


def test_posts_without_the_csrf_token_change_nothing(engine, tasks, client):
    workflow = engine.submit(tasks.add.s(1, 1))
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        answer = client.post(f"/api/v1/workflows/{workflow.id}/pause", headers=headers)
        assert answer.status_code == 403
    form = client.post(f"/workflows/{workflow.id}/pause", data={"csrf_token": "x"})
    assert form.status_code == 403
    assert workflow.state == "IN_PROGRESS"


def test_read_only_refuses_every_action(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 1))
    app = create_app(engine, read_only=True, credentials=Credentials())
    with TestClient(app) as client:
        assert workflow.id[:8] in client.get("/").text
        for action in ("pause", "resume", "cancel", "retry"):
            answer = client.post(
                f"/api/v1/workflows/{workflow.id}/{action}", headers=csrf(client)
            )
            assert answer.status_code == 409
            assert answer.json() == {"error": "the console is read-only"}
        page = client.get(f"/workflows/{workflow.id}").text
        assert "Pause</button>" not in page
    assert workflow.state == "IN_PROGRESS"


def test_credentials_are_required_once_configured(engine, tasks):
    workflow = engine.submit(tasks.add.s(1, 1))
    credentials = Credentials(token="s3cret", user="ops", password="pw")
    with TestClient(create_app(engine, credentials=credentials)) as client:
        assert client.get("/api/v1/workflows").status_code == 401
        assert client.get("/").headers["www-authenticate"].startswith("Basic")
        wrong = client.get("/api/v1/workflows", auth=("ops", "nope"))
        assert wrong.status_code == 401
        assert client.get("/", auth=("ops", "pw")).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        # a bearer token needs no CSRF token: browsers never send one by themselves
        paused = client.post(f"/api/v1/workflows/{workflow.id}/pause", headers=bearer)
        assert paused.status_code == 200
    assert "pause by web:token" in details(engine, workflow.id)


def test_bulk_cancel_by_filter_counts_first(engine, tasks, client):
    doomed = [engine.submit(tasks.add.s(i, i), name="doomed") for i in range(3)]
    kept = engine.submit(tasks.add.s(0, 0), name="kept")
    engine.cancel(doomed[0].id)
    request = {"filter": {"name": "doomed"}, "dry_run": True}
    dry = client.post("/api/v1/bulk/cancel", json=request, headers=csrf(client))
    assert dry.json() == {
        "action": "cancel",
        "dry_run": True,
        "eligible": 2,
        "changed": 0,
        "refused": 0,
    }
    assert doomed[1].state == "IN_PROGRESS"
    done = client.post(
        "/api/v1/bulk/cancel",
        json={"filter": {"name": "doomed"}},
        headers=csrf(client),
    ).json()
    assert (done["changed"], done["refused"]) == (2, 0)
    assert [w.state for w in doomed] == ["CANCELLED"] * 3
    assert kept.state == "IN_PROGRESS"


def test_openapi_document_is_served_and_checked_in(client):
    served = client.get("/api/v1/openapi.json").json()
    assert served == document()
    assert json.loads((DOCS / "openapi.json").read_text()) == served
    assert set(served["paths"]) >= {
        "/workflows",
        "/workflows/{workflow_id}",
        "/workflows/{workflow_id}/nodes",
        "/workflows/{workflow_id}/nodes/{node_id}",
        "/workflows/{workflow_id}/progress",
        "/workflows/{workflow_id}/pause",
        "/bulk/cancel",
    }


@pytest.mark.parametrize("prefix", ["/ops/celeriac"])
def test_a_prefix_serves_everything_under_it(engine, tasks, prefix):
    workflow = engine.submit(tasks.add.s(1, 1))
    with TestClient(
        create_app(engine, prefix=prefix, credentials=Credentials())
    ) as client:
        page = client.get(f"{prefix}/")
        assert f'href="{prefix}/workflows/{workflow.id}"' in page.text
        assert client.get(f"{prefix}/static/htmx.min.js").status_code == 200
        assert client.get(f"{prefix}/api/v1/workflows").json()["counts"] == {
            "IN_PROGRESS": 1
        }
        assert client.get("/api/v1/workflows").status_code == 404
