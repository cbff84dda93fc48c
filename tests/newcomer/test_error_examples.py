"""Every error example in the OpenAPI document is an answer its operation really gives: for
each operation and each documented error status, the test makes that operation answer it
and compares status, type, title, detail (numbers aside: a limit's size is a setting) and
`errors`. Swagger UI shows these examples, and a newcomer copies from them."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from notes_api.core.errors import PROBLEM_JSON
from tests.conftest import client_for, make_settings, running_app, signup
from tests.newcomer.error_answers import ANSWERS, METRICS_TOKEN, World

pytestmark = pytest.mark.timeout(180)


def same(text: str) -> str:
    return re.sub(r"\d+", "N", text)


async def test_every_error_example_is_what_its_operation_answers(database_url: str) -> None:
    settings = make_settings(
        database_url, webhook_allow_private=True, login_max_failures=2, metrics_token=METRICS_TOKEN
    )
    async with running_app(settings) as app, client_for(app) as client:
        admin = await signup(client, organization=f"Examples {uuid.uuid4().hex[:6]}")
        agent = await signup(client)
        world = World(app, client, admin, agent, database_url)
        document = app.openapi()
        checked: list[str] = []
        wrong: list[str] = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                for status, response in operation["responses"].items():
                    if int(status) < 400:
                        continue
                    example = response["content"][PROBLEM_JSON]["example"]
                    answer = await ANSWERS[int(status)](world, method.upper(), path, operation)
                    name = f"{method.upper()} {path} {status}"
                    checked.append(name)
                    if answer.status_code != int(status):
                        wrong.append(f"{name}: answered {answer.status_code} {answer.text}")
                        continue
                    got = answer.json()
                    assert answer.headers["content-type"] == PROBLEM_JSON
                    for key in ("type", "title", "status"):
                        if got[key] != example[key]:
                            wrong.append(f"{name}: {key} {got[key]!r}, documented {example[key]!r}")
                    if same(got["detail"]) != same(example["detail"]):
                        wrong.append(f"{name}: {got['detail']!r}, documented {example['detail']!r}")
                    if got.get("errors") != example.get("errors"):
                        wrong.append(
                            f"{name}: {got.get('errors')}, documented {example.get('errors')}"
                        )
        assert not wrong, "\n".join(wrong)
        assert len(checked) >= 140, checked


def test_examples_name_the_operations_own_fields_and_limits() -> None:
    """The complaints of issue 27, one by one, in the document itself."""
    from notes_api.core.config import Settings
    from notes_api.main import create_app

    document = create_app(Settings(_env_file=None, app_env="test")).openapi()

    def example(method: str, path: str, status: str) -> dict[str, Any]:
        response = document["paths"][path][method]["responses"][status]
        found: dict[str, Any] = response["content"][PROBLEM_JSON]["example"]
        return found

    assert example("get", "/notes/{note_id}", "422")["errors"][0]["loc"] == ["path", "note_id"]
    assert example("post", "/auth/logout", "422")["errors"] == [
        {"loc": ["body", "refresh_token"], "msg": "Field required"}
    ]
    assert "writes" in example("post", "/notes", "429")["detail"]
    assert "event streams" in example("get", "/notes/events", "429")["detail"]
    assert "failed logins" in example("post", "/auth/login", "429")["detail"]
    assert "404" not in document["paths"]["/notes/events"]["get"]["responses"]
    assert "422" not in document["paths"]["/users/me"]["get"]["responses"]
