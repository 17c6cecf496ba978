"""Process settings.

Precedence, highest first: command-line flags, ``ZENML_SCHEDULER_*`` environment variables,
a ``.env`` file in the working directory, built-in defaults. Durations accept ``30s``/``10m``
or plain seconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from scheduler import tuning
from scheduler.config.stored_keys import StoredKey
from scheduler.config.watch_roots import StatePaths
from scheduler.errors import SettingsError
from scheduler.timing.durations import parse_duration

STATE_DIR_NAME = ".zenml-scheduler"
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
SQLITE_FILE = re.compile(r"sqlite(\+\w+)?:///(?P<path>[^?]+)")
ENV_FILE = ".env"
# What a setting given as JSON looks like, for the message when it is not JSON.
JSON_EXAMPLES = {"api_keys": '[{"name": "ci", "scopes": ["trigger"], "hash": "sha256:<hex>"}]'}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ZENML_SCHEDULER_",
        env_file=ENV_FILE,
        env_file_encoding="utf-8",  # whatever the locale: the same file means the same settings everywhere
        extra="forbid",
        validate_default=True,
    )

    config: Path = Field(Path("schedules.yaml"), description="Path of schedules.yaml.")
    db_url: str | None = Field(None, description="SQLAlchemy URL of the state database; default SQLite in state_dir.")
    state_dir: Path | None = Field(
        None, description="Run logs and the default database; default .zenml-scheduler beside the config."
    )
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    misfire_grace: float = Field(600.0, description="Seconds a missed slot stays eligible to fire.")
    max_concurrent_runs: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    shutdown_grace: float = Field(60.0, description="Seconds to let runs finish on SIGTERM.")
    kill_grace: float = Field(10.0, description="Seconds between SIGTERM and SIGKILL for a child.")
    lease_ttl: float = Field(15.0, gt=1, description="Seconds without heartbeat before a lease expires.")
    python: str = Field(sys.executable, description="Interpreter for child processes.")
    standby: bool = Field(
        False, description="On PostgreSQL, wait as a standby while another daemon leads, and take over when it lapses."
    )
    config_max_bytes: int = Field(
        tuning.CONFIG_MAX_BYTES,
        ge=1024,
        description="Largest schedules.yaml read, in bytes (a bigger file is refused).",
    )
    allow_empty: bool = Field(
        False, description="Apply a config without jobs over a database with jobs, removing them all."
    )
    pipeline_check_timeout: float = Field(
        tuning.PIPELINE_CHECK_TIMEOUT_S,
        gt=0,
        description="Seconds the pipeline check may take before it counts as hung.",
    )
    audit_key_file: Path | None = Field(
        None, description="Key file of the audit chain (HMAC); default state_dir/audit-key.json, made on first use."
    )
    max_chain_depth: int = Field(
        10, ge=1, le=1000, description="Most upstream runs in a chain of after: triggers; a longer one is skipped."
    )
    follower_interval: float = Field(
        tuning.FOLLOWER_INTERVAL_S, ge=0.1, le=3600, description="Seconds between the follower's reads of ZenML runs."
    )
    # The HTTP API (see the README's "HTTP API" section).
    api_enabled: bool = Field(False, description="Serve the HTTP API from the daemon.")
    api_host: str = Field("127.0.0.1", description="Address the API binds; non-loopback needs API keys.")
    api_port: int = Field(8765, ge=0, le=65535, description="TCP port of the API (0: any free port).")
    api_keys: list[StoredKey] = Field([], description="Hashed API keys, as JSON (see `api-key create`).")
    api_keys_file: Path | None = Field(None, description="Hashed API keys file; default state_dir/api-keys.json.")
    api_rate_limit: float = Field(10.0, ge=0, description="Requests per second per API key; 0 turns it off.")
    api_rate_burst: int = Field(20, ge=1, description="Requests a key may make at once before the limit applies.")
    api_max_body: int = Field(65536, ge=1024, description="Largest request body accepted, in bytes.")
    api_client_rate_limit: float = Field(
        20.0, ge=0, description="Requests per second per client address, before authentication; 0 turns it off."
    )
    api_client_rate_burst: int = Field(40, ge=1, description="Requests a client address may make at once.")
    api_max_connections: int = Field(
        200, ge=1, le=100_000, description="Connections open at once; more are closed as they are accepted."
    )
    api_request_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's head, and then its body."
    )
    api_ssl_certfile: Path | None = Field(None, description="TLS certificate (PEM) for the API.")
    api_ssl_keyfile: Path | None = Field(None, description="TLS private key (PEM) for the API.")

    @field_validator(
        "misfire_grace",
        "shutdown_grace",
        "kill_grace",
        "lease_ttl",
        "pipeline_check_timeout",
        "api_request_timeout",
        "follower_interval",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # environment variables are strings: "5" means 5 seconds
        return parse_duration(value)

    @field_validator("api_host")
    @classmethod
    def _api_host(cls, value: str) -> str:
        if not valid_host(value):
            hint = " (write an IPv6 address without brackets, e.g. ::1)" if value.startswith("[") else ""
            raise ValueError(
                f"{value!r} is not a valid host name or IP address{hint}; e.g. 127.0.0.1, 0.0.0.0, ::1, api.example.com"
            )
        return value

    def check_python(self) -> None:
        """SettingsError unless `python` is an executable file: the daemon starts every child with it,
        so a wrong one is refused at start rather than failing each run."""
        found = self.python if os.sep in self.python else shutil.which(self.python)
        why = None
        if found is None or not os.path.exists(found):
            why = "does not exist"
        elif os.path.isdir(found):
            why = "is a folder"
        elif not os.access(found, os.X_OK):
            why = "is not executable"
        if why:
            raise SettingsError(
                f"invalid setting python (--python / ZENML_SCHEDULER_PYTHON): {self.python} {why}; give the "
                f"Python interpreter of the environment with ZenML and your pipelines (default: {sys.executable})"
            )

    @property
    def project_root(self) -> Path:
        return self.config.resolve().parent

    @property
    def resolved_state_dir(self) -> Path:
        return (self.state_dir or self.project_root / STATE_DIR_NAME).resolve()

    @property
    def resolved_api_keys_file(self) -> Path:
        return (self.api_keys_file or self.resolved_state_dir / "api-keys.json").resolve()

    @property
    def resolved_audit_key_file(self) -> Path:
        return (self.audit_key_file or self.resolved_state_dir / "audit-key.json").resolve()

    @property
    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite:///{self.resolved_state_dir / 'state.db'}"

    @property
    def state_paths(self) -> StatePaths:
        """Where the daemon writes (run logs, the database), which watch jobs must stay out of."""
        found = SQLITE_FILE.fullmatch(self.resolved_db_url)
        database = Path(found["path"]) if found else None
        return StatePaths(self.resolved_state_dir, database)


def valid_host(host: str) -> bool:
    """An IPv4 or IPv6 address, or a host name of dot-separated labels (letters, digits, inner
    hyphens; RFC 1123) whose last label is not a number (so 999.1.1.1 is a bad address, not a name)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    return 0 < len(name) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def load_settings(**overrides: Any) -> Settings:
    """Settings from flags (`overrides`, None meaning "not given"), environment, .env, defaults."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"setting {name} ({_env_name(name)}): {message}")
        if len(lines) == 1:
            raise SettingsError(f"invalid {lines[0]}") from None
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
    except SourceError as exc:
        raise SettingsError(_unparsable(exc)) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SettingsError(
            f"the {ENV_FILE} file {Path(ENV_FILE).resolve()} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
            f"on line {line}; save it as UTF-8, one NAME=value per line"
        ) from None
    except OSError as exc:
        raise SettingsError(f"cannot read the {ENV_FILE} file {Path(ENV_FILE).resolve()}: {exc.strerror}") from None


def _env_name(name: str) -> str:
    return f"ZENML_SCHEDULER_{name.upper()}"


def _unparsable(exc: SourceError) -> str:
    """A setting given as JSON (in the environment or .env) that is not JSON."""
    found = re.search(r'field "([^"]+)" from source "(\w+)"', str(exc))
    if found is None:
        return f"invalid settings: {exc}"
    name, source = found.groups()
    where = f" in {Path(ENV_FILE).resolve()}" if source.startswith("DotEnv") else ""
    example = JSON_EXAMPLES.get(name)
    expected = f"; expected JSON, e.g. {example}" if example else "; expected JSON"
    return f"invalid setting {name} ({_env_name(name)}{where}): not valid JSON ({exc.__cause__ or exc}){expected}"
