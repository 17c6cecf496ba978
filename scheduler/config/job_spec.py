"""The schema of one job in schedules.yaml: what to run, when, and the firing policies.

Durations stay as written (``"30s"``) so that the stored spec and its diffs read like the file;
`Job` in `scheduler.config.loader` exposes them as seconds.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from scheduler import tuning
from scheduler.config.after_spec import AfterSpec
from scheduler.config.notify_spec import NotifyTarget
from scheduler.config.watch_spec import WatchSpec
from scheduler.timing.cron import TriggerError
from scheduler.timing.cron_trigger import CronTrigger
from scheduler.timing.durations import Duration, parse_duration

COUNT_LIMIT = 1_000_000_000  # any count a job can set: far above real use, far below 64-bit columns
MAX_YEAR = 9000  # instants stay far inside what datetime arithmetic can hold (year 9999)
PIPELINE_REF = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


class RetryPolicy(BaseModel):
    """Retry a failed, timed-out or unlaunchable run: `max` more attempts, waiting
    backoff * factor**(n-1) before attempt n+1, at most max_backoff."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(ge=1, le=1000)
    backoff: Duration = "30s"
    factor: float = Field(2.0, ge=1, le=100, allow_inf_nan=False)
    max_backoff: Duration = "10m"

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        backoff, cap = parse_duration(self.backoff), parse_duration(self.max_backoff)
        growth = (failed_attempt - 1) * math.log(self.factor)
        if backoff == 0 or growth < math.log(max(cap, 1e-9) / backoff):  # below the cap, without overflowing
            return min(backoff * math.exp(growth), cap)
        return cap


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = {}


OVERRIDE_KEY = re.compile(
    r"parameters\.(?P<name>[A-Za-z_]\w*)|steps\.(?P<step>[A-Za-z0-9_][\w-]*)\.parameters\.(?P<input>[A-Za-z_]\w*)"
)
OVERRIDE_FORMS = "'parameters.<name>' (a pipeline parameter) or 'steps.<step>.parameters.<name>' (a step input)"


def parse_override_key(entry: object) -> tuple[str | None, str] | None:
    """Split an `api.overridable` entry: ``(None, name)`` for ``parameters.<name>``, ``(step, input)``
    for ``steps.<step>.parameters.<input>``, None when it has neither form."""
    found = OVERRIDE_KEY.fullmatch(entry) if isinstance(entry, str) else None
    if found is None:
        return None
    return (None, found["name"]) if found["name"] else (found["step"], found["input"])


def _override_key(entry: str) -> str:
    if parse_override_key(entry) is None:
        raise ValueError(f"expected {OVERRIDE_FORMS}, got {entry!r}")
    return entry


class ApiSpec(BaseModel):
    """What an HTTP caller may change when it starts a run of the job: nothing unless listed.

    The pipeline check verifies each entry against the real pipeline (it exists, and a step input
    is one the pipeline body leaves open); `scheduler.api.overrides` enforces the list per request.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    overridable: list[Annotated[str, AfterValidator(_override_key)]] = []


class JobSpec(BaseModel):
    """One job as written in schedules.yaml, after `defaults:` were applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str
    cron: str | None = None
    every: str | None = None
    at: datetime | None = None
    watch: WatchSpec | None = None
    after: AfterSpec | None = None
    timezone: str = "UTC"
    parameters: dict[str, Any] = {}
    steps: dict[str, StepConfig] = {}
    enable_cache: bool | None = None
    enabled: bool = True
    description: str = ""
    # Firing policies
    catchup: Literal["none", "latest", "all"] = "latest"
    misfire_grace: Duration | None = None  # None: the daemon's misfire_grace setting (10m)
    max_catchup: int = Field(50, ge=1, le=tuning.CATCH_UP_WINDOW_LIMIT)
    concurrency: Literal["skip", "queue", "replace", "allow"] = "skip"
    max_active: int | None = Field(None, ge=1, le=COUNT_LIMIT)
    max_queued: int = Field(10, ge=1, le=COUNT_LIMIT)
    start: datetime | None = None
    end: datetime | None = None
    max_runs: int | None = Field(None, ge=1, le=COUNT_LIMIT)
    timeout: str | None = None
    retries: RetryPolicy | None = None
    jitter: Duration | None = None
    pause_after_failures: int | None = Field(None, ge=1, le=COUNT_LIMIT)
    notify: list[NotifyTarget] = []  # webhooks; a job's own list replaces the default one
    api: ApiSpec = ApiSpec()  # what an HTTP caller may override; a job's own `api` replaces the default one

    @model_validator(mode="before")
    @classmethod
    def _file_run_defaults(cls, data: Any) -> Any:
        """Files are independent work that must not be dropped: a watch job runs them side by
        side and, after an outage, dispatches every file that arrived, unless told otherwise."""
        if isinstance(data, dict) and data.get("watch") is not None:
            data = {"concurrency": "allow", "catchup": "all", **data}
        return data

    @field_validator("pipeline")
    @classmethod
    def _pipeline_ref(cls, value: str) -> str:
        if not PIPELINE_REF.fullmatch(value):
            raise ValueError(
                f"expected 'package.module:attribute' (e.g. pipelines.training:training_pipeline), got {value!r}"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a folder of the zone database
            raise ValueError(f"unknown IANA timezone {value!r} (e.g. UTC, Europe/Berlin)") from None
        return value

    @field_validator("at", "start", "end")
    @classmethod
    def _instant(cls, value: datetime | None) -> datetime | None:
        if value is not None and not 1970 <= value.year <= MAX_YEAR:
            raise ValueError(f"{value.isoformat()} is outside the years 1970 to {MAX_YEAR}")
        return value

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 1:
            raise ValueError("every must be at least 1s")
        if value is not None and parse_duration(value) % 1:
            raise ValueError("every must be whole seconds")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 1:
            raise ValueError("timeout must be at least 1s")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronTrigger(value, ZoneInfo("UTC"))
            except TriggerError as exc:
                raise ValueError(str(exc)) from None
        return value
