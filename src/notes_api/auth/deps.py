"""What signing in and up is handed: the settings and the password hasher."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from notes_api.auth.service import AuthContext
from notes_api.core.deps import SettingsDep
from notes_api.users.deps import PasswordsDep


async def auth_context(settings: SettingsDep, passwords: PasswordsDep) -> AuthContext:
    return AuthContext(settings=settings, passwords=passwords)


AuthDep = Annotated[AuthContext, Depends(auth_context)]
