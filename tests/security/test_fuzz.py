"""Property-based fuzzing from the service's own OpenAPI document (schemathesis), against a
real uvicorn server, signed in as an agent and as an admin.

Every generated request, valid or deliberately invalid, must get a documented status with a
body of the documented shape, never a 5xx, and every error must be problem+json. All of
schemathesis's checks run, with a response-time limit; the few rules the schema cannot state
(opaque cursors, idempotency keys, email deliverability, text a database cannot store) are
excused by name below.
`FUZZ_EXAMPLES` sets the examples per operation (default 15; `make fuzz` sets it high)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from notes_api.main import create_app
from tests.conftest import PASSWORD, make_settings
from tests.reliability.harness import ThreadedServer, truncate

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
PROBLEM_JSON = "application/problem+json"

# A body over 1 MiB is refused with 413 before it is parsed, and a body under another media
# type with 415: right answers to invalid data. No answer may take longer than the longest
# `?wait=` (30 s) and a little more.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413", "415"]
            },
            "max_response_time": 35.0,
        }
    }
)
# The document is the app's own; the requests go to the real server of `fuzz_world`.
# The event streams are left out: a stream that is allowed never ends (its heartbeats keep
# any read timeout from firing). Their refusals are checked by tests/api/test_tenancy.py and
# tests/security/test_authz_matrix.py, their answers by tests/events/.
schema = schemathesis.openapi.from_dict(
    create_app(make_settings("sqlite://")).openapi(), config=CONFIG
).exclude(path_regex=r"/events$")


@dataclass
class FuzzWorld:
    base_url: str
    agent: dict[str, str]
    admin: dict[str, str]
    note_ids: list[str]
    calls: dict[str, int] = field(default_factory=dict)


def _signup(client: httpx.Client, **extra: Any) -> dict[str, str]:
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    response = client.post("/auth/signup", json={"email": email, "password": PASSWORD, **extra})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzWorld]:
    """One server per database for the whole module, with an agent, an admin of another
    organization, and a few of the agent's notes for the fuzzer to aim at."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz") / "notes.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database_url = f"sqlite:///{path}"
    else:
        database_url = request.getfixturevalue("pg_url")
        truncate(database_url)
    # Long-lived tokens and no lockout: a long `make fuzz` must not drift into 401s and 429s.
    app_settings = make_settings(
        database_url, worker_embedded=True, access_token_ttl=24 * 3600, login_max_failures=1000
    )
    with ThreadedServer(create_app(app_settings)) as server:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            admin = _signup(client, organization_name=f"Fuzz {uuid.uuid4().hex[:6]}")
            agent = _signup(client)
            note_ids = []
            for i in range(4):
                created = client.post(
                    "/notes", headers=agent, json={"raw_text": f"Fuzz seed note {i}. Two."}
                )
                assert created.status_code == 202, created.text
                note_ids.append(created.json()["id"])
        world = FuzzWorld(server.base_url, agent, admin, note_ids)
        yield world
        total = sum(world.calls.values())
        print(f"\nfuzz[{request.param}]: {total} requests, {len(world.calls)} operations")


def errors_are_problem_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx that the app answers is RFC 9457 problem+json, without a trace."""
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith(PROBLEM_JSON), (
            f"{response.status_code} answered as {content_type!r}: {response.text[:200]}"
        )
        body = response.json()
        assert body["status"] == response.status_code
        assert {"type", "title", "detail"} <= body.keys()
        assert "Traceback" not in response.text
    return None


# Rules that JSON Schema cannot state, so schema-valid data may break them and get a 422:
# - a forged cursor: cursors are opaque, signed by the server; the schema can only say
#   "string", and any string the fuzzer makes up is rightly refused;
# - an Idempotency-Key the fuzzer reused with another body: what a key may carry depends on
#   the request made with it before, which no schema of one request can say;
# - an address email-validator refuses (reserved domains such as `.test`): its rules are
#   more than `format: email` says;
# - text with lone surrogates or only blanks, and NUL outside passwords (where a pattern says
#   so): a pattern on a 100,000-character field would make generation crawl;
# - a webhook URL that is not an https URL of a public host: resolution is not a schema rule.
# Each has its own tests under tests/api/ (the URL's under tests/webhooks/).
_UNSTATED_RULES = (
    ("cursor", "invalid cursor"),
    ("url", ""),
    ("email", ""),
    ("Idempotency-Key", "reused with a different request body"),
    ("", "NUL"),
    ("", "surrogate"),
    ("", "blank"),
)


def _breaks_only_unstated_rules(response: Any, case: Any) -> bool:
    if response.status_code != 422:
        return False
    errors = response.json().get("errors") or []
    return bool(errors) and all(
        any(
            (not name or name in [str(part) for part in error["loc"]]) and text in error["msg"]
            for name, text in _UNSTATED_RULES
        )
        for error in errors
    )


Check = Callable[[Any, Any, Any], "bool | None"]


def _unless(check: Check, failure: type[Exception], excused: Callable[[Any, Any], bool]) -> Check:
    """A built-in check whose failure is excused when `excused(response, case)`."""

    def wrapped(ctx: Any, response: Any, case: Any) -> bool | None:
        try:
            return check(ctx, response, case)
        except failure:
            if excused(response, case):
                return None
            raise

    wrapped.__name__ = check.__name__
    return wrapped


# Every other built-in check runs as it is: status codes, content types, headers and bodies
# as documented, negative data refused, missing required headers, unsupported methods and
# their `Allow`, auth that cannot be skipped, and max_response_time (configured above).
REPLACED = [positive_data_acceptance]
ADDED = [
    errors_are_problem_json,
    _unless(positive_data_acceptance, RejectedPositiveData, _breaks_only_unstated_rules),
]


def _aim_at_real_notes(case: Any, world: FuzzWorld) -> None:
    """Half of the generated note ids become the agent's real notes, so the fuzzer reaches
    past 404 into the handlers (the choice follows the generated id: reproducible)."""
    note_id = (case.path_parameters or {}).get("note_id")
    try:
        parsed = uuid.UUID(str(note_id))
    except ValueError:
        return
    if parsed.int % 2:
        case.path_parameters["note_id"] = world.note_ids[parsed.int % len(world.note_ids)]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case: Any, fuzz_world: FuzzWorld) -> None:
    _aim_at_real_notes(case, fuzz_world)
    label = f"{case.method} {case.path}"
    for who in (fuzz_world.agent, fuzz_world.admin):
        fuzz_world.calls[label] = fuzz_world.calls.get(label, 0) + 1
        response = case.call(base_url=fuzz_world.base_url, headers=who, timeout=30)
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text}"
        case.validate_response(response, excluded_checks=REPLACED, additional_checks=ADDED)
