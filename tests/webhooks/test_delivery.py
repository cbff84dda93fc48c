"""Deliveries to a real local receiver that verifies each one with `standardwebhooks`, by
the embedded worker, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.events.models import NoteEvent
from tests.conftest import Account, create_note
from tests.webhooks.conftest import deliveries, eventually, register
from tests.webhooks.receiver import Receiver, always


async def _note_done(api: httpx.AsyncClient, who: Account, text: str) -> dict[str, Any]:
    note = await create_note(api, who, text)
    done = await api.get(f"/notes/{note['id']}?wait=10", headers=who.headers)
    assert done.json()["status"] == "done"
    return note


async def test_each_subscribed_event_is_delivered_once_signed(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver
) -> None:
    endpoint = await register(api, admin, receiver.url)
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    note = await _note_done(api, admin, "A CRM wants to hear of this. Two sentences.")
    await eventually(lambda: len(receiver.delivered()) >= 2)
    await asyncio.sleep(0.5)  # no repeats come later
    got = receiver.delivered()
    assert len(got) == 2 and len({r.id for r in got}) == 2
    assert all(r.verifies_with(secret) for r in got)
    assert [r.json["type"] for r in got] == ["note.queued", "note.done"]
    done = got[1].json
    assert set(done) == {"type", "timestamp", "data"}
    assert done["data"]["id"] == note["id"] and done["data"]["status"] == "done"
    assert done["data"]["summary"] and "raw_text" not in done["data"]
    # webhook-id is the event id: the same as the stream's `id:`.
    assert int(got[0].id) < int(got[1].id)
    log = await deliveries(api, admin, endpoint["id"])
    assert [(d["status_code"], d["attempt"]) for d in log] == [(200, 1), (200, 1)]
    # Newest attempt first. The two deliveries are separate jobs, so which of them was
    # recorded last is not the events' order (Standard Webhooks promises no order either).
    assert sorted(d["type"] for d in log) == ["note.done", "note.queued"]
    assert [d["created_at"] for d in log] == sorted((d["created_at"] for d in log), reverse=True)
    assert all(d["duration_ms"] is not None for d in log)


async def test_an_endpoint_of_another_organization_hears_nothing(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver
) -> None:
    from tests.conftest import signup

    other_admin = await signup(api, organization="Other")
    await register(api, other_admin, receiver.url, ["note.queued"])
    await _note_done(api, admin, "Acme's note. Two sentences.")
    mine = await _note_done(api, other_admin, "Other's note. Two sentences.")
    await eventually(lambda: len(receiver.delivered()) >= 1)
    await asyncio.sleep(0.5)
    assert [r.json["data"]["id"] for r in receiver.delivered()] == [mine["id"]]


async def test_a_receiver_down_for_a_while_gets_each_event_once_when_back(
    api: httpx.AsyncClient, admin: Account
) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()  # down: connections are refused
    endpoint = await register(api, admin, f"http://127.0.0.1:{port}/hooks", ["note.done"])
    await _note_done(api, admin, "Delivered after retries. Two sentences.")
    await eventually(lambda: _attempts_logged(api, admin, endpoint["id"], 2))
    back = Receiver(port=port).start()
    try:
        await eventually(lambda: len(back.delivered()) == 1)
        await asyncio.sleep(1.0)  # retries are 0.2-0.4 s apart: a repeat would show by now
        assert len(back.received) == 1
        assert back.delivered()[0].verifies_with(endpoint["secret"])
        log = await deliveries(api, admin, endpoint["id"])
        assert log[0]["status_code"] == 200 and log[0]["attempt"] == len(log) >= 3
        assert all(d["status_code"] is None and d["error"] for d in log[1:])
        assert len({d["event_id"] for d in log}) == 1
    finally:
        back.stop()


async def _attempts_logged(
    api: httpx.AsyncClient, admin: Account, endpoint_id: str, n: int
) -> bool:
    return len(await deliveries(api, admin, endpoint_id)) >= n


async def test_a_slow_receiver_is_timed_out_and_tried_again(
    api: httpx.AsyncClient, admin: Account, settings: Settings
) -> None:
    slow_first = Receiver(behaviour=lambda n: (200, {}, 3.0 if n == 1 else 0.0)).start()
    try:
        endpoint = await register(api, admin, slow_first.url, ["note.queued"])
        await create_note(api, admin, "A slow receiver. Two sentences.")
        await eventually(lambda: len(slow_first.received) >= 2, timeout=20)
        log = await deliveries(api, admin, endpoint["id"])
        assert [d["attempt"] for d in log] == [2, 1]
        assert log[1]["error"] == "timed out" and log[1]["status_code"] is None
        assert log[1]["duration_ms"] >= settings.webhook_timeout * 1000 * 0.9
        assert log[0]["status_code"] == 200
        assert slow_first.received[0].id == slow_first.received[1].id  # the same message
    finally:
        slow_first.stop()


async def test_429_with_retry_after_waits_as_asked(api: httpx.AsyncClient, admin: Account) -> None:
    busy = Receiver(
        behaviour=lambda n: (429, {"Retry-After": "1"}, 0.0) if n == 1 else (200, {}, 0.0)
    ).start()
    try:
        await register(api, admin, busy.url, ["note.queued"])
        await create_note(api, admin, "Busy receiver. Two sentences.")
        await eventually(lambda: len(busy.delivered()) == 1)
        first, second = busy.received
        assert second.at - first.at >= 0.95  # not the 0.2-0.4 s backoff
    finally:
        busy.stop()


async def test_410_gone_disables_the_endpoint(api: httpx.AsyncClient, admin: Account) -> None:
    gone = Receiver(behaviour=always(410)).start()
    try:
        endpoint = await register(api, admin, gone.url, ["note.queued"])
        await create_note(api, admin, "To a gone endpoint. Two sentences.")
        await eventually(lambda: len(gone.received) == 1)
        url = f"/webhooks/{endpoint['id']}"
        await eventually(lambda: _disabled(api, admin, url))
        shown = (await api.get(url, headers=admin.headers)).json()
        assert "410" in shown["disabled_reason"]
        await create_note(api, admin, "Not sent any more. Two sentences.")
        await asyncio.sleep(0.8)
        assert len(gone.received) == 1
    finally:
        gone.stop()


async def _disabled(api: httpx.AsyncClient, admin: Account, url: str) -> bool:
    return (await api.get(url, headers=admin.headers)).json()["enabled"] is False


async def test_400_is_final_and_not_retried(api: httpx.AsyncClient, admin: Account) -> None:
    refusing = Receiver(behaviour=always(400)).start()
    try:
        endpoint = await register(api, admin, refusing.url, ["note.queued"])
        await create_note(api, admin, "Refused once. Two sentences.")
        await eventually(lambda: len(refusing.received) == 1)
        await asyncio.sleep(1.0)
        assert len(refusing.received) == 1
        log = await deliveries(api, admin, endpoint["id"])
        assert [(d["status_code"], d["attempt"]) for d in log] == [(400, 1)]
        still = (await api.get(f"/webhooks/{endpoint['id']}", headers=admin.headers)).json()
        assert still["enabled"] is True  # one failure is not a pattern
    finally:
        refusing.stop()


async def test_repeated_final_failures_disable_the_endpoint_with_the_reason(
    api: httpx.AsyncClient, admin: Account
) -> None:
    refusing = Receiver(behaviour=always(422)).start()
    try:
        endpoint = await register(api, admin, refusing.url, ["note.queued"])
        for i in range(5):
            await create_note(api, admin, f"Refused {i}. Two sentences.")
        url = f"/webhooks/{endpoint['id']}"
        await eventually(lambda: _disabled(api, admin, url))
        shown = (await api.get(url, headers=admin.headers)).json()
        assert "5 deliveries in a row failed" in shown["disabled_reason"]
        assert "HTTP 422" in shown["disabled_reason"]
        # Turned back on by an admin: delivering again, the count starts afresh.
        on = await api.patch(url, headers=admin.headers, json={"enabled": True})
        assert on.json()["enabled"] is True and on.json()["disabled_reason"] is None
    finally:
        refusing.stop()


async def test_during_a_rotation_both_secrets_sign(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver
) -> None:
    endpoint = await register(api, admin, receiver.url, ["note.queued"])
    old = endpoint["secret"]
    rotated = await api.post(f"/webhooks/{endpoint['id']}/rotate-secret", headers=admin.headers)
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    await create_note(api, admin, "Signed twice. Two sentences.")
    await eventually(lambda: len(receiver.delivered()) == 1)
    got = receiver.delivered()[0]
    signatures = got.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert got.verifies_with(old) and got.verifies_with(new)
    assert not got.verifies_with("whsec_" + "A" * 44)


async def test_a_delivery_can_be_sent_again(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver
) -> None:
    endpoint = await register(api, admin, receiver.url, ["note.queued"])
    await create_note(api, admin, "Sent twice on request. Two sentences.")
    await eventually(lambda: _attempts_logged(api, admin, endpoint["id"], 1))
    delivery = (await deliveries(api, admin, endpoint["id"]))[0]
    again = await api.post(
        f"/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/resend", headers=admin.headers
    )
    assert again.status_code == 202
    await eventually(lambda: len(receiver.delivered()) == 2)
    first, second = receiver.delivered()
    assert first.id == second.id and first.body == second.body
    missing = await api.post(
        f"/webhooks/{endpoint['id']}/deliveries/{endpoint['id']}/resend", headers=admin.headers
    )
    assert missing.status_code == 404


async def test_deliveries_stop_after_the_webhook_attempt_limit(database_url: str) -> None:
    from tests.conftest import client_for, make_settings, running_app, signup
    from tests.webhooks.conftest import FAST_RETRIES

    settings = make_settings(database_url, **{**FAST_RETRIES, "webhook_max_attempts": 3})
    failing = Receiver(behaviour=always(503)).start()
    try:
        async with running_app(settings) as app, client_for(app) as api:
            admin = await signup(api, organization="Acme")
            endpoint = await register(api, admin, failing.url, ["note.queued"])
            await create_note(api, admin, "Never answered well. Two sentences.")
            await eventually(lambda: _attempts_logged(api, admin, endpoint["id"], 3))
            await asyncio.sleep(1.0)  # a fourth try would come within 0.4 s
            log = await deliveries(api, admin, endpoint["id"])
            assert [(d["attempt"], d["status_code"]) for d in log] == [(3, 503), (2, 503), (1, 503)]
            assert len(failing.received) == 3
    finally:
        failing.stop()


async def test_a_burst_of_one_organizations_deliveries_does_not_hold_up_anothers(
    api: httpx.AsyncClient, admin: Account
) -> None:
    """Deliveries take turns by organization (their fairness key), like summaries: with
    Acme's burst of slow deliveries filling the worker's four slots, Other's note is still
    summarized and delivered at the next free slot, not after the burst."""
    from tests.conftest import signup

    burst = 24
    slow = Receiver(behaviour=lambda n: (200, {}, 1.0)).start()  # 4 slots: 6 s for the burst
    fast = Receiver().start()
    try:
        await register(api, admin, slow.url, ["note.queued"])
        for i in range(burst):
            await create_note(api, admin, f"Acme's note {i}. Two sentences.")
        other = await signup(api, organization="Other")
        await register(api, other, fast.url, ["note.queued", "note.done"])
        await eventually(lambda: len(slow.received) >= 1)  # the burst is under way
        mine = await create_note(api, other, "Other's note. Two sentences.")
        await eventually(lambda: len(fast.delivered()) >= 2, timeout=30)
        # Both of Other's deliveries (queued, then done: the summary ran too) arrived while
        # half of Acme's burst was still waiting; behind it they would come after 20 or more.
        assert len(slow.received) <= burst // 2
        assert [r.json["data"]["id"] for r in fast.delivered()] == [mine["id"]] * 2
        await eventually(lambda: len(slow.received) >= burst, timeout=60)
    finally:
        slow.stop()
        fast.stop()


async def test_webhook_ids_are_the_organizations_own_event_numbers(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver
) -> None:
    """Neither the webhook-id nor the delivery log counts other organizations' events: a
    new organization's first note is its events 1 (queued), 2 (processing, not subscribed)
    and 3 (done), however busy the others were."""
    from tests.conftest import signup

    for i in range(3):
        await _note_done(api, admin, f"Acme's note {i}. Two sentences.")
    newcomer = await signup(api, organization="Newcomer")
    endpoint = await register(api, newcomer, receiver.url)
    await _note_done(api, newcomer, "The newcomer's first note. Two sentences.")
    await eventually(lambda: len(receiver.delivered()) >= 2)
    assert sorted(int(r.id) for r in receiver.delivered()) == [1, 3]
    await eventually(lambda: _logged(api, newcomer, endpoint["id"], 2))
    log = await deliveries(api, newcomer, endpoint["id"])
    assert sorted(d["event_id"] for d in log) == [1, 3]
    # Sent again from the log, the delivery is the same event under the same id.
    first = next(d for d in log if d["event_id"] == 1)
    resent = await api.post(
        f"/webhooks/{endpoint['id']}/deliveries/{first['id']}/resend", headers=newcomer.headers
    )
    assert resent.status_code == 202
    await eventually(lambda: len(receiver.delivered()) >= 3)
    assert [int(r.id) for r in receiver.delivered()].count(1) == 2


async def _logged(api: httpx.AsyncClient, admin: Account, endpoint_id: str, count: int) -> bool:
    return len(await deliveries(api, admin, endpoint_id)) >= count


async def test_the_retention_purge_drops_old_events_and_their_delivery_logs_only(
    api: httpx.AsyncClient, admin: Account, receiver: Receiver, db: Database
) -> None:
    """The house-keeping of the events' retention period: the events and the webhook
    attempt logs older than it go (one transaction; each package deletes its own rows),
    younger ones stay."""
    from notes_api.runtime import purge_events_and_deliveries

    endpoint = await register(api, admin, receiver.url, ["note.queued"])
    await create_note(api, admin, "Kept for a while. Two sentences.")
    await eventually(lambda: _logged(api, admin, endpoint["id"], 1))
    async with db.session() as session:
        assert await purge_events_and_deliveries(session, hours=1) == 0
    assert len(await deliveries(api, admin, endpoint["id"])) == 1
    async with db.session() as session:
        # A retention period that ends in the future: everything is older than it.
        assert await purge_events_and_deliveries(session, hours=-1) >= 1
    assert await deliveries(api, admin, endpoint["id"]) == []
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(NoteEvent)) == 0
