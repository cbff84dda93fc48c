"""The webhook job kind: deliver one event to one endpoint, signed, and log the attempt.

Success is a 2xx within the timeout. Timeouts, connection errors, 429 and 5xx are tried
again (after `Retry-After` when the receiver sends one, else with growing delays for about a
day); any other answer is final, and 410 Gone disables the endpoint. An endpoint whose
deliveries fail for good `disable_after` times in a row is disabled too, with the reason."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from sqlalchemy import and_, case, insert, literal, update
from sqlalchemy.ext.asyncio import AsyncSession

from notes_api.core.config import Settings
from notes_api.core.models import utcnow
from notes_api.core.retry_after import retry_after_seconds
from notes_api.events import repository as event_log
from notes_api.jobs.handler import Done, Ended, Failed, Outcome, Retry, RetryPolicy
from notes_api.jobs.models import Claimed, JobStatus
from notes_api.webhooks.fanout import WEBHOOK
from notes_api.webhooks.models import WebhookDelivery, WebhookEndpoint
from notes_api.webhooks.signing import signed_headers
from notes_api.webhooks.targets import TargetRefused, resolve


@dataclass(frozen=True)
class Prepared:
    endpoint_id: uuid.UUID
    event_id: int  # the event's number in its organization (`seq`): the webhook-id
    event_type: str
    url: str
    keys: list[str]
    body: str


@dataclass(frozen=True)
class Refused:
    """Why a delivery is not attempted, and whether that goes in the endpoint's log."""

    reason: str
    logged: bool


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt found: carried by its outcome to `record`, which logs it."""

    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None
    skipped: bool = False  # the endpoint is gone or disabled: nothing to log against it


def parse_key(job: Claimed) -> tuple[int, uuid.UUID]:
    event_id, _, endpoint_id = str(job.dedupe_key).partition(":")
    return int(event_id), uuid.UUID(endpoint_id)


class WebhookHandler:
    kind = WEBHOOK

    def __init__(self, settings: Settings) -> None:
        # Retried for about a day by default: `webhook_max_attempts` tries, whatever the row says.
        self.retry: RetryPolicy | None = RetryPolicy(
            settings.webhook_retry_base,
            settings.webhook_retry_max,
            max_attempts=settings.webhook_max_attempts,
        )
        self.allow_private = settings.webhook_allow_private
        self.disable_after = settings.webhook_disable_after
        # No redirects: a receiver must not be able to point deliveries somewhere else.
        self.client = httpx.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False, trust_env=False
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def lock(self, session: AsyncSession, jobs: Sequence[Claimed]) -> set[uuid.UUID]:
        """Nothing to lock first: the API changes endpoints alone, never their jobs, so the
        engine's transactions cannot wait on the API's in a cycle."""
        return {job.id for job in jobs}

    async def start(
        self, session: AsyncSession, jobs: Sequence[Claimed]
    ) -> list[Prepared | Refused]:
        return [await self._prepare(session, job) for job in jobs]

    async def _prepare(self, session: AsyncSession, job: Claimed) -> Prepared | Refused:
        """What the delivery needs, or why it is not attempted."""
        event_id, endpoint_id = parse_key(job)
        endpoint = await session.get(WebhookEndpoint, endpoint_id)
        if endpoint is None or not endpoint.enabled:
            return Refused("the endpoint was deleted or disabled", logged=False)
        event = await event_log.get(session, event_id)
        if event is None:
            return Refused("the event is no longer kept", logged=True)
        keys = [endpoint.secret]
        expires = endpoint.previous_secret_expires_at
        if endpoint.previous_secret and expires is not None and expires > utcnow():
            keys.append(endpoint.previous_secret)
        payload = {
            "type": event.type,
            "timestamp": event.occurred_at.isoformat(),
            "data": event.data,
        }
        body = json.dumps(payload, separators=(",", ":"))
        return Prepared(endpoint.id, event.seq, event.type, endpoint.url, keys, body)

    async def run(self, job: Claimed, prepared: Prepared | Refused) -> Outcome:
        if isinstance(prepared, Refused):
            skipped = Attempt(skipped=not prepared.logged, error=prepared.reason)
            return Failed(prepared.reason, detail=skipped)
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        try:
            target = await resolve(prepared.url, allow_private=self.allow_private)
        except TargetRefused as exc:
            error = f"refused: {exc}"
            return Failed(error, detail=Attempt(error=error, duration_ms=took()))
        headers = signed_headers(str(prepared.event_id), prepared.body, prepared.keys, utcnow())
        headers["host"] = target.host_header
        try:
            response = await self.client.post(
                target.url,
                content=prepared.body.encode(),
                headers=headers,
                extensions={"sni_hostname": target.sni_hostname},
            )
        except httpx.TimeoutException:
            return Retry("timed out", detail=Attempt(error="timed out", duration_ms=took()))
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            return Retry(error, detail=Attempt(error=error, duration_ms=took()))
        code = response.status_code
        attempt = Attempt(status_code=code, duration_ms=took())
        if 200 <= code < 300:
            return Done(attempt)
        if code == 429 or code >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            return Retry(f"HTTP {code}", after=wait, detail=attempt)
        return Failed(f"HTTP {code}", detail=attempt)

    async def record(self, session: AsyncSession, ended: Sequence[Ended]) -> None:
        """Log each attempt against its endpoint, and judge the endpoint by it."""
        for end in ended:
            if end.outcome is None:
                continue  # given back unfinished at shutdown: not an attempt
            found = end.outcome.result if isinstance(end.outcome, Done) else end.outcome.detail
            # No attempt of its own: the lease ran out, or the subject was gone.
            attempt = found if isinstance(found, Attempt) else Attempt(error=end.error)
            if not attempt.skipped:
                await self._log(session, end.job, end.status, attempt)

    async def _log(
        self, session: AsyncSession, job: Claimed, status: JobStatus, attempt: Attempt
    ) -> None:
        event_id, endpoint_id = parse_key(job)
        event = await event_log.get(session, event_id)
        await session.execute(
            insert(WebhookDelivery).values(
                id=uuid.uuid4(),
                endpoint_id=endpoint_id,
                # The organization's own number of the event, as its streams and the
                # webhook-id show it (0 once the event is no longer kept).
                event_id=event.seq if event is not None else 0,
                type=event.type if event is not None else "",
                attempt=job.attempts,
                status_code=attempt.status_code,
                error=attempt.error if attempt.status_code is None else None,
                duration_ms=attempt.duration_ms,
                created_at=utcnow(),
            )
        )
        await self._judge(session, endpoint_id, status, attempt)

    async def _judge(
        self, session: AsyncSession, endpoint_id: uuid.UUID, status: JobStatus, attempt: Attempt
    ) -> None:
        """Keep count of deliveries failed for good; disable the endpoint when it is gone."""
        row = WebhookEndpoint
        stmt = update(row).where(row.id == endpoint_id)
        if status is JobStatus.DONE:
            await session.execute(
                stmt.where(row.consecutive_failures != 0).values(consecutive_failures=0)
            )
        elif attempt.status_code == 410:
            reason = "the endpoint answered 410 Gone"
            await session.execute(
                stmt.values(enabled=False, disabled_reason=reason, updated_at=utcnow())
            )
        elif status is JobStatus.FAILED:
            failures = row.consecutive_failures + 1
            last = attempt.error or f"HTTP {attempt.status_code}"
            reason = f"{self.disable_after} deliveries in a row failed (the last: {last})"
            tripped = failures >= self.disable_after
            await session.execute(
                stmt.values(
                    consecutive_failures=failures,
                    enabled=and_(row.enabled, ~tripped),
                    disabled_reason=case(
                        (and_(row.enabled, tripped), literal(reason)), else_=row.disabled_reason
                    ),
                )
            )
