"""The two roles and the configured tokens (kept apart so auth and sessions share them)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum

from worker.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Role(IntEnum):
    """What a caller may do; a higher role may do everything a lower one may."""

    READ = 1
    ADMIN = 2


@dataclass(frozen=True)
class Tokens:
    """The configured bearer tokens (plain text: kept only in this process's memory)."""

    admin: str | None = None
    read: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Tokens:
        """The tokens `settings` configure."""
        admin, read = settings.admin_token, settings.read_token
        return cls(
            admin=admin.get_secret_value() if admin else None,
            read=read.get_secret_value() if read else None,
        )

    @property
    def open(self) -> bool:
        """No token configured: every (local) caller may act."""
        return self.admin is None and self.read is None

    def role_of(self, presented: str) -> Role | None:
        """The role `presented` grants, or `None` (both compared, in constant time)."""
        given = presented.encode()
        is_admin = self.admin is not None and hmac.compare_digest(given, self.admin.encode())
        is_read = self.read is not None and hmac.compare_digest(given, self.read.encode())
        if is_admin:
            return Role.ADMIN
        return Role.READ if is_read else None
