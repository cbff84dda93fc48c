"""The first admin of the default organization, from the environment or the CLI."""

from __future__ import annotations

import structlog

from notes_api.core.config import Settings
from notes_api.core.db import Database
from notes_api.core.errors import Conflict
from notes_api.core.identity import Role
from notes_api.core.schemas import normalize_email
from notes_api.organizations.service import ensure_default_organization
from notes_api.users import repository as users
from notes_api.users.passwords import Passwords

log = structlog.get_logger("notes_api.bootstrap")


async def create_admin(
    db: Database, settings: Settings, passwords: Passwords, email: str, password: str
) -> bool:
    """Create an ADMIN in the default organization; False if the email is already taken."""
    email = normalize_email(email)
    password_hash = await passwords.hash(password)
    async with db.session() as session:
        if await users.email_taken(session, email):
            return False
        org_id = await ensure_default_organization(session)
        try:
            await users.create_user(
                session,
                email=email,
                password_hash=password_hash,
                role=Role.ADMIN,
                organization_id=org_id,
            )
        except Conflict:
            return False
    return True


async def bootstrap_admin(db: Database, settings: Settings, passwords: Passwords) -> None:
    if not (settings.bootstrap_admin_email and settings.bootstrap_admin_password):
        return
    created = await create_admin(
        db,
        settings,
        passwords,
        settings.bootstrap_admin_email,
        settings.bootstrap_admin_password.get_secret_value(),
    )
    log.info("bootstrap.admin", created=created)
