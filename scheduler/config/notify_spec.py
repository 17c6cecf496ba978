"""The schema of one webhook target in schedules.yaml (`notify:` of a job or of `defaults:`).

Only the *name* of the environment variable holding the signing secret is configured; the
secret itself never enters the file, the state database or the logs. The URL is treated as a
secret too (Slack-style URLs carry a token in their path): everything that is stored or audited
shows `display` (the target's `name`, else scheme://host[:port]) instead.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from scheduler.timing.durations import Duration, parse_duration

NOTIFY_EVENTS = ("succeeded", "failed", "timed_out", "skipped", "paused")
DEFAULT_EVENTS = ("failed", "timed_out")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_RETRIES = 10


def url_origin(url: str) -> str:
    """scheme://host[:port] of `url`: enough to tell targets apart, never the path, query or
    credentials (where tokens live)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


class NotifyTarget(BaseModel):
    """Where to POST, for which events, signed with which secret, and how hard to try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    name: str | None = Field(None, min_length=1, max_length=100)
    events: list[str] = list(DEFAULT_EVENTS)
    secret_env: str | None = None
    timeout: Duration = "10s"
    retries: int = Field(3, ge=0, le=MAX_RETRIES)
    backoff: Duration = "2s"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.username is not None or parts.password is not None:
            # Every delivery to such a URL would fail. The message never repeats what was written.
            raise ValueError(
                "the URL carries credentials (user:password@ before the host), which webhook URLs may not: "
                "remove them. Deliveries authenticate with a header instead: set secret_env to the name of an "
                "environment variable holding a shared secret, and the receiver checks the X-Signature header"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("the URL has an invalid port") from None
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = [event for event in value if event not in NOTIFY_EVENTS]
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}; allowed: {', '.join(NOTIFY_EVENTS)}")
        if not value:
            raise ValueError(f"events must not be empty; allowed: {', '.join(NOTIFY_EVENTS)}")
        return list(dict.fromkeys(value))  # duplicates would not send twice anyway; keep the file's order

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(f"expected an environment variable name (e.g. WEBHOOK_SECRET), got {value!r}")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("timeout must be more than 0s")
        return value

    @field_serializer("url", when_used="json")
    def _redacted_url(self, value: str) -> str:
        """The stored and audited spec keeps the origin and a digest, so a changed URL still shows
        as a changed job, without the token being written anywhere."""
        return f"{url_origin(value)}/...#sha256:{hashlib.sha256(value.encode()).hexdigest()[:12]}"

    @property
    def display(self) -> str:
        """How audit records and logs name this target."""
        return self.name or url_origin(self.url)

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed: backoff * 2**(n-1)."""
        return parse_duration(self.backoff) * 2 ** (failed_attempt - 1)

    def wants(self, event: str) -> bool:
        return event in self.events

    def __repr_args__(self) -> Any:
        # A repr in a traceback or debug log must not leak the URL's token either.
        for key, value in super().__repr_args__():
            yield key, (self.display if key == "url" else value)
