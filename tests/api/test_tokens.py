"""Access tokens: only a valid, unexpired HS256 token of an active user gets in, and the user
is loaded on every request, so deactivation and role changes take effect at once."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from notes_api.core.config import Settings
from notes_api.core.identity import Role
from notes_api.core.models import utcnow
from notes_api.organizations.models import DEFAULT_ORGANIZATION_ID
from notes_api.users import tokens
from notes_api.users.tokens import (
    AccessClaims,
    create_access_token,
    decode_access_token,
    hash_refresh_token,
)
from tests.conftest import Account, add_user, signup


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert {"type", "title", "status", "detail"} <= response.json().keys()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def secret_of(settings: Settings) -> str:
    return settings.jwt_secret.get_secret_value()


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64(part: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def claims_for(account: Account, **changes: Any) -> dict[str, Any]:
    now = utcnow()
    claims: dict[str, Any] = {
        "sub": account.id,
        "org": account.user["organization_id"],
        "role": account.user["role"],
        "sid": str(account.session_id),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "iss": "notes-api",
        "typ": "access",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def test_valid_access_token_gets_in(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    assert (await client.get("/users/me", headers=account.headers)).status_code == 200


async def test_access_token_carries_the_documented_claims(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await signup(client, organization="Claims")
    claims = jwt.decode(
        account.access_token, secret_of(settings), algorithms=["HS256"], issuer="notes-api"
    )
    assert claims["sub"] == account.id
    assert claims["org"] == account.user["organization_id"]
    assert claims["role"] == "ADMIN"
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl
    assert claims["jti"]
    assert jwt.get_unverified_header(account.access_token)["alg"] == "HS256"


async def test_missing_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/users/me"))


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Token abc",
        "bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer a.b",
        "Bearer ....",
        "Bearer é",
    ],
)
async def test_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, header: str
) -> None:
    # Sent as bytes: a header is not always ASCII.
    response = await client.get("/users/me", headers={"Authorization": header.encode()})
    assert_unauthorized(response)


async def test_tampered_payload_is_401(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    header, payload, signature = account.access_token.split(".")
    forged = b64({**unb64(payload), "role": "ADMIN"})
    token = f"{header}.{forged}.{signature}"
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))
    assert_unauthorized(await client.get("/users", headers=bearer(token)))


async def test_tampered_signature_is_401(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    header, payload, signature = account.access_token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    token = f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    account = await signup(client)
    token = create_access_token(
        secret_of(settings),
        user_id=uuid.UUID(account.id),
        organization_id=uuid.UUID(account.user["organization_id"]),
        role="AGENT",
        session_id=account.session_id,
        ttl=60,
        now=utcnow() - timedelta(minutes=5),
    )
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_token_made_the_same_way_but_current_is_accepted(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # The counterpart of the expired-token test: only `now` differs.
    account = await signup(client)
    token = create_access_token(
        secret_of(settings),
        user_id=uuid.UUID(account.id),
        organization_id=uuid.UUID(account.user["organization_id"]),
        role="AGENT",
        session_id=account.session_id,
        ttl=60,
    )
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200


async def test_alg_none_token_is_401(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    unsigned = jwt.encode(claims_for(account), key=None, algorithm="none")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    assert_unauthorized(await client.get("/users/me", headers=bearer(unsigned)))
    # And by hand, with an empty signature and the header spelled in other cases.
    payload = account.access_token.split(".")[1]
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg, 'typ': 'JWT'})}.{payload}."
        assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_token_signed_with_another_secret_is_401(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    token = jwt.encode(
        claims_for(account), "another-secret-that-is-long-enough-32b", algorithm="HS256"
    )
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_token_with_other_hmac_algorithm_is_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await signup(client)
    token = jwt.encode(claims_for(account), secret_of(settings), algorithm="HS512")
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_token_for_unknown_user_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    await signup(client)
    token = create_access_token(
        secret_of(settings),
        user_id=uuid.uuid4(),
        organization_id=DEFAULT_ORGANIZATION_ID,
        role="ADMIN",
        session_id=uuid.uuid4(),
        ttl=60,
    )
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_token_naming_another_organization_is_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    account = await signup(client)
    other = await signup(client, organization="Elsewhere")
    token = jwt.encode(
        claims_for(account, org=other.user["organization_id"]),
        secret_of(settings),
        algorithm="HS256",
    )
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": None},
        {"org": None},
        {"exp": None},
        {"iat": None},
        {"jti": None},
        {"iss": None},
        {"iss": "someone-else"},
        {"typ": None},
        {"typ": "refresh"},
        {"sub": "not-a-uuid"},
        {"org": "not-a-uuid"},
        {"sub": 12345},
    ],
)
async def test_token_with_missing_or_wrong_claim_is_401(
    client: httpx.AsyncClient, settings: Settings, changes: dict[str, Any]
) -> None:
    account = await signup(client)
    claims = claims_for(account)
    for key, value in changes.items():
        if value is None:
            claims.pop(key)
        else:
            claims[key] = value
    token = jwt.encode(claims, secret_of(settings), algorithm="HS256")
    assert_unauthorized(await client.get("/users/me", headers=bearer(token)))


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    account = await signup(client)
    assert_unauthorized(await client.get("/users/me", headers=bearer(account.refresh_token)))


def test_decode_access_token_refuses_garbage_without_raising() -> None:
    secret = "s" * 40
    for token in ("", ".", "a.b.c", "\x00", "é.é.é"):
        assert decode_access_token(secret, token) is None


def test_a_token_verified_once_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    # Verified signatures are remembered; the expiry is not, so an accepted token is refused
    # as soon as its time is up.
    secret, user, org = "s" * 40, uuid.uuid4(), uuid.uuid4()
    token = create_access_token(
        secret, user_id=user, organization_id=org, role="AGENT", session_id=uuid.uuid4(), ttl=60
    )
    claims = decode_access_token(secret, token)
    assert claims is not None and claims.user_id == user and claims.organization_id == org
    assert decode_access_token(secret, token) == claims
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert decode_access_token(secret, token) is None


def test_a_remembered_token_is_refused_under_another_secret() -> None:
    secret, other = "s" * 40, "t" * 40
    token = create_access_token(
        secret,
        user_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        role="ADMIN",
        session_id=uuid.uuid4(),
        ttl=60,
    )
    assert decode_access_token(secret, token) is not None
    assert decode_access_token(other, token) is None


async def test_deactivated_user_is_locked_out_at_once(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Deactivation")
    agent = await add_user(client, admin, "AGENT")
    assert (await client.get("/users/me", headers=agent.headers)).status_code == 200
    response = await client.patch(
        f"/users/{agent.id}", headers=admin.headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    # The access token has not expired, and yet it no longer works.
    assert_unauthorized(await client.get("/users/me", headers=agent.headers))
    refreshed = await client.post("/auth/refresh", json={"refresh_token": agent.refresh_token})
    assert_unauthorized(refreshed)


async def test_a_deactivated_user_can_neither_read_nor_write_notes(
    client: httpx.AsyncClient,
) -> None:
    admin = await signup(client, organization="Deactivated notes")
    agent = await add_user(client, admin, "AGENT")
    note = (await client.post("/notes", headers=agent.headers, json={"raw_text": "kept"})).json()
    await client.patch(f"/users/{agent.id}", headers=admin.headers, json={"is_active": False})
    body = {"raw_text": "after deactivation"}
    keyed = {**agent.headers, "Idempotency-Key": "k-1"}
    for response in (
        await client.get(f"/notes/{note['id']}", headers=agent.headers),
        await client.get("/notes", headers=agent.headers),
        await client.post("/notes", headers=agent.headers, json=body),
        await client.post("/notes", headers=keyed, json=body),
        await client.patch(f"/notes/{note['id']}", headers=agent.headers, json=body),
        await client.delete(f"/notes/{note['id']}", headers=agent.headers),
    ):
        assert_unauthorized(response)
    # Nothing was written: the admin sees the one note made before.
    listed = (await client.get("/notes", headers=admin.headers)).json()["items"]
    assert [n["id"] for n in listed] == [note["id"]]
    assert listed[0]["raw_text"] == "kept"


async def test_reactivated_user_must_sign_in_again(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Reactivation")
    agent = await add_user(client, admin, "AGENT")
    for active in (False, True):
        await client.patch(f"/users/{agent.id}", headers=admin.headers, json={"is_active": active})
    # Deactivation ended its sessions for good: neither their refresh token nor their
    # access token works again; a new login does.
    refreshed = await client.post("/auth/refresh", json={"refresh_token": agent.refresh_token})
    assert_unauthorized(refreshed)
    assert_unauthorized(await client.get("/users/me", headers=agent.headers))
    login = await client.post(
        "/auth/login", json={"email": agent.email, "password": agent.password}
    )
    assert login.status_code == 200


async def test_role_change_takes_effect_at_once(client: httpx.AsyncClient) -> None:
    first = await signup(client, organization="Roles")
    second = await add_user(client, first, "ADMIN")
    assert (await client.get("/users", headers=second.headers)).status_code == 200
    demoted = await client.patch(
        f"/users/{second.id}", headers=first.headers, json={"role": "AGENT"}
    )
    assert demoted.status_code == 200
    # The token still says ADMIN; the database says AGENT, and the database wins.
    response = await client.get("/users", headers=second.headers)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/users/me", headers=second.headers)).json()["role"] == "AGENT"


async def test_promotion_takes_effect_at_once(client: httpx.AsyncClient) -> None:
    admin = await signup(client, organization="Promotion")
    agent = await add_user(client, admin, "AGENT")
    assert (await client.get("/users", headers=agent.headers)).status_code == 403
    await client.patch(f"/users/{agent.id}", headers=admin.headers, json={"role": "ADMIN"})
    assert (await client.get("/users", headers=agent.headers)).status_code == 200


async def test_refreshed_access_token_carries_the_new_role(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signup(client, organization="Refresh role")
    agent = await add_user(client, admin, "AGENT")
    await client.patch(f"/users/{agent.id}", headers=admin.headers, json={"role": "ADMIN"})
    pair = (await client.post("/auth/refresh", json={"refresh_token": agent.refresh_token})).json()
    claims = jwt.decode(
        pair["access_token"], secret_of(settings), algorithms=["HS256"], issuer="notes-api"
    )
    assert claims["role"] == "ADMIN"


def test_a_valid_token_gives_back_the_claims_it_was_issued_with() -> None:
    secret, user, org, sid = "s" * 40, uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    token = create_access_token(
        secret, user_id=user, organization_id=org, role="ADMIN", session_id=sid, ttl=60
    )
    assert decode_access_token(secret, token) == AccessClaims(user, org, Role.ADMIN, sid)
    # Signed with the right secret, but naming a role that does not exist: refused.
    forged = create_access_token(
        secret, user_id=user, organization_id=org, role="ROOT", session_id=sid, ttl=60
    )
    assert decode_access_token(secret, forged) is None


def counting_verify(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    verify = tokens._verify
    checked: list[str] = []

    def counted(secret: str, token: str) -> Any:
        checked.append(token)
        return verify(secret, token)

    monkeypatch.setattr(tokens, "_verify", counted)
    return checked


def test_a_token_is_verified_once_and_the_oldest_remembered_forgotten_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = counting_verify(monkeypatch)
    monkeypatch.setattr(tokens, "_verified", {})
    monkeypatch.setattr(tokens, "_REMEMBERED", 2)
    secret = "s" * 40
    first, second, third = (
        create_access_token(
            secret,
            user_id=uuid.uuid4(),
            organization_id=uuid.uuid4(),
            role="AGENT",
            session_id=uuid.uuid4(),
            ttl=60,
        )
        for _ in range(3)
    )
    for token in (first, first, second, second):
        assert decode_access_token(secret, token) is not None
    assert checked == [first, second]  # each signature checked once
    for token in (third, second, first):  # the third pushes out the oldest, the first
        assert decode_access_token(secret, token) is not None
    assert checked == [first, second, third, first]


def test_a_refresh_token_with_a_lone_surrogate_hashes_instead_of_failing() -> None:
    # JSON can carry "\ud800"; such a token is unknown (401), not a server error.
    digests = {hash_refresh_token(t) for t in ("\ud800", "\udfff", "\ud800x")}
    assert len(digests) == 3
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in digests)
