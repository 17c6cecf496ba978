"""The `watch:` block of a job: which files in which folder start a run, and when they count
as complete. Pure: the folder is not looked at here (a missing folder is only a warning
at validate time, see `scheduler.watch.folder_watcher`)."""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from scheduler.timing.durations import Duration, parse_duration

DEFAULT_SETTLE = "2s"
# How often the event-driven watcher rescans its folder anyway, as a safety net.
DEFAULT_SCAN_INTERVAL = "60s"
# How often `poll: true` scans, when scan_interval is not given.
DEFAULT_POLL_INTERVAL = "1s"

KeyPath = tuple[str | int, ...]
PER_FILE_NAMES = ("path", "name", "stem")
PER_BATCH_NAMES = ("paths",)


def _name_pattern(pattern: str) -> str:
    if not pattern or "/" in pattern:
        raise ValueError(f"{pattern!r}: patterns match file names, so they cannot be empty or contain '/'")
    return pattern


NamePattern = Annotated[str, AfterValidator(_name_pattern)]


class WatchSpec(BaseModel):
    """Where to look and when a file is ready; see the README's "File-watch jobs"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    patterns: list[NamePattern] = ["*"]
    ignore: list[NamePattern] = [".*", "*.tmp", "*.part", "*~"]
    recursive: bool = False
    settle: Duration | None = None  # None: DEFAULT_SETTLE, unless ready_marker is used
    ready_marker: str | None = None
    batch: Literal["per_file", "per_batch"] = "per_file"
    batch_window: Duration = "10s"
    max_batch: int = Field(500, ge=1, le=100_000)
    on_modified: Literal["ignore", "retrigger"] = "ignore"
    poll: bool = False
    scan_interval: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("path must name a folder")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("patterns must list at least one pattern, e.g. ['*.csv']")
        return value

    @field_validator("ready_marker")
    @classmethod
    def _marker(cls, value: str | None) -> str | None:
        if value is not None and (not value or "/" in value or value in (".", "..")):
            raise ValueError(f"ready_marker must be a plain file name such as '_SUCCESS', got {value!r}")
        return value

    @field_validator("scan_interval")
    @classmethod
    def _scan(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) < 0.1:
            raise ValueError("scan_interval must be at least 100ms")
        return value

    @property
    def readiness_conflict(self) -> bool:
        """settle and ready_marker are two answers to one question; a job gives one (checked by the loader,
        which can point at the line)."""
        return self.settle is not None and self.ready_marker is not None

    @property
    def settle_seconds(self) -> float:
        if self.ready_marker is not None:
            return 0.0
        return parse_duration(self.settle or DEFAULT_SETTLE)

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.batch_window) if self.batch == "per_batch" else 0.0

    @property
    def scan_seconds(self) -> float:
        default = DEFAULT_POLL_INTERVAL if self.poll else DEFAULT_SCAN_INTERVAL
        return parse_duration(self.scan_interval or default)


def template_names(mode: str) -> tuple[str, ...]:
    return PER_FILE_NAMES if mode == "per_file" else PER_BATCH_NAMES


def template_problems(parameters: dict[str, Any], mode: str) -> list[tuple[KeyPath, str]]:
    """(path under `parameters`, message) for every template a watch job may not use.

    `{{` and `}}` stand for literal braces. `{paths}` (a list) must be a whole value.
    """
    allowed = template_names(mode)
    problems = []
    for key, value in string_values(parameters, ()):
        try:
            parsed = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value) if name is not None]
        except ValueError as exc:
            problems.append((key, f"bad template {value!r}: {exc}"))
            continue
        fields = [name for name, _, _ in parsed]
        for name in fields:
            if name.split(".")[0] == "upstream":
                problems.append((key, f"{{{name}}} is filled only in after: jobs; {mode} allows {_listed(allowed)}"))
            elif name not in allowed:
                problems.append((key, f"unknown template {{{name}}} in {value!r}; {mode} allows {_listed(allowed)}"))
        if any(spec or conv for _, spec, conv in parsed):
            problems.append((key, f"template {value!r}: format specs and conversions are not supported"))
        if "paths" in fields and value != "{paths}":
            problems.append((key, "{paths} is a list of files and must be the whole value: input_paths: '{paths}'"))
    return problems


def render_parameters(parameters: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`parameters` with every template filled in from `values` ({paths} becomes the list itself)."""

    def render(value: Any) -> Any:
        if isinstance(value, str):
            if value == "{paths}" and "paths" in values:
                return list(values["paths"])
            if "{" in value or "}" in value:
                return value.format_map(values)
            return value
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    return {key: render(value) for key, value in parameters.items()}


def templated_keys(parameters: dict[str, Any]) -> list[str]:
    """Top-level parameters whose value holds a template (a manual run must give them)."""
    return sorted({str(key[0]) for key, value in string_values(parameters, ()) if _has_field(value)})


def templated_paths(parameters: dict[str, Any]) -> list[KeyPath]:
    """Where in `parameters` a template is written."""
    return [key for key, value in string_values(parameters, ()) if _has_field(value)]


def _has_field(value: str) -> bool:
    try:
        return any(name is not None for _, name, _, _ in string.Formatter().parse(value))
    except ValueError:
        return False


def string_values(value: Any, path: KeyPath) -> list[tuple[KeyPath, str]]:
    """(path, text) of every string in nested dicts and lists: where templates can be."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [item for key, child in value.items() for item in string_values(child, (*path, str(key)))]
    if isinstance(value, list):
        return [item for index, child in enumerate(value) for item in string_values(child, (*path, index))]
    return []


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join("{" + name + "}" for name in names)
