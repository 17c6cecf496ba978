"""What the daemon and its children exchange: a launch child's spec in and result out, and the
lines the run follower streams.

The launch fields are documented with the entry point, ``scheduler.child``; the follower's lines
with ``scheduler.child.follower``. Nothing here imports ZenML, so the spec is validated before
the child loads it, and the daemon parses the follower's lines without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FOLLOWER_MODULE = "scheduler.child.follower"
"""Started as ``python -m FOLLOWER_MODULE --since ISO8601 ...`` with stdin a pipe the daemon holds."""

MAX_FOLLOWER_LINE_BYTES = 1024 * 1024
"""The longest line the follower sends (it drops metadata first) and `parse_follower_line` reads."""

FOLLOWER_NOTE_KINDS = ("ready", "caught-up", "alive", "error")


class SpecError(ValueError):
    """The launch spec is missing a field or has one of the wrong type."""


@dataclass(frozen=True)
class LaunchSpec:
    """One launch, as written by the daemon."""

    run_key: str
    job: str
    pipeline: str
    project_root: str
    run_name: str
    result_path: str
    parameters: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    enable_cache: bool | None = None
    tags: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Any) -> LaunchSpec:
        """Validate a decoded spec.

        Raises:
            SpecError: Naming the first offending field.
        """
        if not isinstance(raw, dict):
            raise SpecError("spec must be a JSON object")

        def text(name: str) -> str:
            value = raw.get(name)
            if not isinstance(value, str) or not value:
                raise SpecError(f"spec field {name!r} must be a non-empty string")
            return value

        def absolute(name: str) -> str:
            value = text(name)
            if not os.path.isabs(value):
                raise SpecError(f"spec field {name!r} must be an absolute path")
            return value

        parameters = raw.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise SpecError("spec field 'parameters' must be an object")
        steps = raw.get("steps") or {}
        if not isinstance(steps, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("parameters", {}), dict) for v in steps.values()
        ):
            raise SpecError("spec field 'steps' must map step names to {\"parameters\": {...}}")
        enable_cache = raw.get("enable_cache")
        if enable_cache is not None and not isinstance(enable_cache, bool):
            raise SpecError("spec field 'enable_cache' must be true, false or null")
        tags = raw.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise SpecError("spec field 'tags' must be a list of strings")
        project_root = absolute("project_root")
        if not Path(project_root).is_dir():
            raise SpecError(f"project_root {project_root!r} is not a folder")
        return cls(
            run_key=text("run_key"),
            job=text("job"),
            pipeline=text("pipeline"),
            project_root=project_root,
            run_name=text("run_name"),
            result_path=absolute("result_path"),
            parameters=parameters,
            steps=steps,
            enable_cache=enable_cache,
            tags=tags,
        )


@dataclass
class LaunchResult:
    """What the daemon reads back from ``result_path``."""

    status: str
    started_at: str
    finished_at: str = ""
    zenml_run_id: str | None = None
    zenml_run_name: str | None = None
    zenml_status: str | None = None
    error: str | None = None

    def to_json(self) -> str:
        """Serialise with a fixed key order (readable when inspected by hand)."""
        return json.dumps(
            {
                "status": self.status,
                "zenml_run_id": self.zenml_run_id,
                "zenml_run_name": self.zenml_run_name,
                "zenml_status": self.zenml_status,
                "error": self.error,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
            }
        )


def utc_now_iso() -> str:
    """Current time as ISO-8601 with an explicit UTC offset."""
    return datetime.now(timezone.utc).isoformat()


def write_result(path: str, result: LaunchResult) -> None:
    """Write the result so a reader never sees a partial file."""
    result.finished_at = result.finished_at or utc_now_iso()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(result.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


RESULT_STATUSES = ("succeeded", "failed", "cancelled")


def read_result(path: Path) -> LaunchResult | None:
    """The result a child wrote, or None when there is none (yet) or it is unreadable.

    An unknown status reads as "failed": the daemon never reports success it cannot vouch for.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    status = raw.get("status")
    return LaunchResult(
        status=status if status in RESULT_STATUSES else "failed",
        started_at=str(raw.get("started_at") or ""),
        finished_at=str(raw.get("finished_at") or ""),
        zenml_run_id=raw.get("zenml_run_id"),
        zenml_run_name=raw.get("zenml_run_name"),
        zenml_status=raw.get("zenml_status"),
        error=raw.get("error"),
    )


def read_spec(path: str) -> tuple[LaunchSpec | None, str | None, str | None]:
    """Return (spec, result_path, error); result_path is best effort for errors."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except (OSError, ValueError) as exc:
        return None, None, f"cannot read spec {path}: {exc}"
    result_path = raw.get("result_path") if isinstance(raw, dict) else None
    if not (isinstance(result_path, str) and os.path.isabs(result_path)):
        result_path = None
    try:
        return LaunchSpec.from_dict(raw), result_path, None
    except SpecError as exc:
        return None, result_path, str(exc)


@dataclass(frozen=True)
class FollowedRun:
    """A ZenML run that has finished, as the follower reports it.

    ``steps`` maps each step to ``{"metadata": {...}}``; ``artifacts`` maps each step to
    ``{output name: artifact version id}``. ``truncated`` says the follower dropped metadata
    and parameters to keep the line under `MAX_FOLLOWER_LINE_BYTES`.
    """

    zenml_run_id: str
    zenml_run_name: str
    pipeline: str
    status: str
    started_at: datetime | None
    finished_at: datetime
    parameters: dict[str, Any]
    metadata: dict[str, Any]
    steps: dict[str, dict[str, Any]]
    artifacts: dict[str, dict[str, str]]
    tags: list[str]
    truncated: bool = False


@dataclass(frozen=True)
class FollowerNote:
    """Any other follower line: ``ready``, ``caught-up``, ``alive`` (with ``at``) or ``error``
    (with ``message``)."""

    kind: str
    at: datetime | None
    message: str | None = None


def _refuse_constant(name: str) -> Any:
    raise SpecError(f"follower line holds {name}, which is not JSON")


def _optional_aware(raw: dict[str, Any], name: str) -> datetime | None:
    return None if raw.get(name) is None else _aware(raw, name)


def _aware(raw: dict[str, Any], name: str) -> datetime:
    value = raw.get(name)
    if not isinstance(value, str):
        raise SpecError(f"follower line field {name!r} must be an ISO-8601 time")
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix.
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError as exc:
        raise SpecError(f"follower line field {name!r} is not an ISO-8601 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise SpecError(f"follower line field {name!r} has no UTC offset: {value!r}")
    return moment.astimezone(timezone.utc)


def _text(raw: dict[str, Any], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise SpecError(f"follower line field {name!r} must be a non-empty string")
    return value


def _object(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if not isinstance(value, dict):
        raise SpecError(f"follower line field {name!r} must be an object")
    return value


def _followed_run(raw: dict[str, Any]) -> FollowedRun:
    steps = _object(raw, "steps")
    if not all(isinstance(s, dict) and isinstance(s.get("metadata"), dict) for s in steps.values()):
        raise SpecError("follower line field 'steps' must map step names to {\"metadata\": {...}}")
    artifacts = _object(raw, "artifacts")
    if not all(isinstance(a, dict) and all(isinstance(i, str) for i in a.values()) for a in artifacts.values()):
        raise SpecError("follower line field 'artifacts' must map step names to {output: artifact id}")
    tags = raw.get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise SpecError("follower line field 'tags' must be a list of strings")
    truncated = raw.get("truncated", False)
    if not isinstance(truncated, bool):
        raise SpecError("follower line field 'truncated' must be true or false")
    return FollowedRun(
        zenml_run_id=_text(raw, "zenml_run_id"),
        zenml_run_name=_text(raw, "zenml_run_name"),
        pipeline=_text(raw, "pipeline"),
        status=_text(raw, "status"),
        started_at=_optional_aware(raw, "started_at"),
        finished_at=_aware(raw, "finished_at"),
        parameters=_object(raw, "parameters"),
        metadata=_object(raw, "metadata"),
        steps=steps,
        artifacts=artifacts,
        tags=tags,
        truncated=truncated,
    )


def parse_follower_line(line: str) -> FollowedRun | FollowerNote:
    """One line of the follower's stdout, decoded and checked.

    Raises:
        SpecError: For a line that is too long, not a JSON object (NaN and Infinity included),
            of an unknown kind, or with a field missing or of the wrong type.
    """
    if len(line) > MAX_FOLLOWER_LINE_BYTES or len(line.encode("utf-8", "surrogatepass")) > MAX_FOLLOWER_LINE_BYTES:
        raise SpecError(f"follower line longer than {MAX_FOLLOWER_LINE_BYTES} bytes")
    try:
        raw = json.loads(line, parse_constant=_refuse_constant)
    except SpecError:
        raise
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"follower line is not JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError("follower line must be a JSON object")
    kind = raw.get("kind")
    if kind == "run":
        return _followed_run(raw)
    if kind == "error":
        message = raw.get("message")
        if not isinstance(message, str):
            raise SpecError("follower error line must have a string 'message'")
        return FollowerNote(kind=kind, at=_optional_aware(raw, "at"), message=message)
    if kind in FOLLOWER_NOTE_KINDS:
        return FollowerNote(kind=kind, at=_aware(raw, "at"))
    raise SpecError(f"follower line of unknown kind {kind!r}")


def last_output_line(path: Path, limit: int) -> str:
    """The last line of a child's output file, read from its last `limit` bytes ("" when none):
    what a child that ended without a result last said."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
