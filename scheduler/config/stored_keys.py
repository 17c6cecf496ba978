"""An HTTP API key as stored (name, scopes, hash; never the key): the shape of the key file's
entries and of the api_keys setting. Scopes nest: admin includes trigger, which includes read."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["read", "trigger", "admin"]
SCOPE_RANK: dict[str, int] = {"read": 1, "trigger": 2, "admin": 3}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


class StoredKey(BaseModel):
    """One key as stored: its name (shown in the audit trail), scopes and hash, never the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    scopes: tuple[Scope, ...] = Field(min_length=1)
    hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    created_at: str | None = None

    def allows(self, needed: Scope) -> bool:
        return max(SCOPE_RANK[s] for s in self.scopes) >= SCOPE_RANK[needed]
