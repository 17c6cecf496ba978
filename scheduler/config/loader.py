"""schedules.yaml: the strict models and the loader that reports every problem as file:line:col.

The loader is pure apart from reading the file (and, for watch jobs, resolving their folders
and reading the mount table, see `scheduler.config.watch_roots`): it returns a `Config` whose
jobs carry their parsed trigger, or raises `ConfigError` listing everything wrong. Pipelines are
not imported here (that needs ZenML, which only child processes load); see
`scheduler.runs.preflight`.
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from scheduler import tuning
from scheduler.config.after_checks import after_problems, no_upstream_problems, upstream_job_problems
from scheduler.config.job_spec import JobSpec
from scheduler.config.model import Config, Job
from scheduler.config.watch_roots import StatePaths, WatchRoots
from scheduler.config.watch_spec import template_problems, templated_paths
from scheduler.config.yaml_source import SourceMap, load_yaml
from scheduler.errors import ConfigError, Problem
from scheduler.timing.cron import TriggerError
from scheduler.timing.cron_trigger import CronTrigger
from scheduler.timing.durations import parse_duration
from scheduler.timing.triggers import (
    AfterTrigger,
    FileTrigger,
    IntervalTrigger,
    OneOffTrigger,
    Trigger,
    WindowedTrigger,
)

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# The keys of which a job gives exactly one: what starts its runs.
TRIGGER_KEYS = ("cron", "every", "at", "watch", "after")
# Triggers `defaults:` may not give: every job without its own trigger would inherit it.
NOT_DEFAULT_TRIGGERS = {
    "after": "defaults cannot set after: every job without a trigger of its own would run after the same "
    "upstream; give after: to each job that needs it",
}
SUPPORTED_VERSION = 1


def load_config(path: Path | str, max_bytes: int = tuning.CONFIG_MAX_BYTES, state: StatePaths | None = None) -> Config:
    """Read and validate schedules.yaml; raise ConfigError with every problem found. With `state`
    (where the daemon writes), watch jobs may not watch those places."""
    path = Path(path)
    display = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)  # never more than the limit in memory
    except IsADirectoryError:
        raise ConfigError([Problem(display, 1, 1, "cannot read config: it is a folder, not a file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(display, 1, 1, f"cannot read config: {exc.strerror}")]) from None
    if len(raw) > max_bytes:
        message = f"the file is larger than {max_bytes:,} bytes (setting config_max_bytes); is it schedules.yaml?"
        raise ConfigError([Problem(display, 1, 1, message)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        message = f"not UTF-8 text: byte 0x{byte} cannot be decoded ({exc.reason}); save the file as UTF-8"
        raise ConfigError([Problem(display, line, column, message)]) from None
    return parse_config(text, path, revision=hashlib.sha256(raw).hexdigest()[:12], state=state)


def parse_config(text: str, path: Path, revision: str, state: StatePaths | None = None) -> Config:
    data, source = load_yaml(text, str(path))
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError([source.problem((), "the file must be a mapping with 'version' and 'jobs'")])
    for key in data:
        if key not in ("version", "defaults", "jobs"):
            problems.append(source.problem((key,), f"unknown key {key!r}; expected version, defaults, jobs", key=True))
    if "version" not in data:
        problems.append(source.problem((), f"missing 'version: {SUPPORTED_VERSION}'"))
    elif data["version"] != SUPPORTED_VERSION:
        problems.append(
            source.problem(("version",), f"unsupported version {data['version']!r}; expected {SUPPORTED_VERSION}")
        )
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(source.problem(("defaults",), "defaults must be a mapping of job fields"))
        defaults = {}
    for key in defaults:
        if key not in JobSpec.model_fields:
            problems.append(source.problem(("defaults", key), _unknown_field(key), key=True))
        elif key in NOT_DEFAULT_TRIGGERS:
            problems.append(source.problem(("defaults", key), NOT_DEFAULT_TRIGGERS[key], key=True))
    defaults = {k: v for k, v in defaults.items() if k in JobSpec.model_fields and k not in NOT_DEFAULT_TRIGGERS}
    jobs_raw = data.get("jobs")
    if jobs_raw is None:
        jobs_raw = {}
        if "jobs" not in data:
            problems.append(source.problem((), "missing 'jobs' mapping"))
    if not isinstance(jobs_raw, dict):
        problems.append(source.problem(("jobs",), "jobs must be a mapping of job name to job"))
        jobs_raw = {}
    jobs: dict[str, Job] = {}
    roots = WatchRoots(state)
    for name, raw_job in jobs_raw.items():
        job = _build_job(str(name), raw_job, defaults, source, problems, path.resolve().parent, roots)
        if job is not None:
            jobs[job.name] = job
    problems += upstream_job_problems(jobs, [str(name) for name in jobs_raw], source)
    if problems:
        raise ConfigError(sorted(set(problems), key=lambda p: (p.line, p.column, p.message)))
    # `jobs: {}` says "no jobs" on purpose; a bare `jobs:` (null) is as likely a save gone wrong.
    emptied = isinstance(data.get("jobs"), dict) and not data["jobs"]
    return Config(path=path, revision=revision, jobs=jobs, source=source, empty_on_purpose=emptied)


def _unknown_field(key: str) -> str:
    return f"unknown job field {key!r}; allowed: {', '.join(JobSpec.model_fields)}"


def _build_job(
    name: str,
    raw: Any,
    defaults: dict[str, Any],
    source: SourceMap,
    problems: list[Problem],
    base: Path,
    roots: WatchRoots,
) -> Job | None:
    where: tuple[str, ...] = ("jobs", name)
    if not JOB_NAME.fullmatch(name):
        problems.append(
            source.problem(where, f"invalid job name {name!r}: use letters, digits, '_', '-', '.' (max 100)", key=True)
        )
        return None
    if not isinstance(raw, dict):
        problems.append(source.problem(where, f"job {name!r} must be a mapping of job fields"))
        return None
    origin: dict[str, tuple[str, ...]] = {}
    merged: dict[str, Any] = {}
    job_sets_trigger = any(key in raw for key in TRIGGER_KEYS)
    for key, value in defaults.items():
        if key in TRIGGER_KEYS and job_sets_trigger:
            continue  # a job's own trigger replaces the default trigger as a whole
        merged[key], origin[key] = value, ("defaults",)
    for key, value in raw.items():
        merged[key], origin[key] = value, where
    triggers = [key for key in TRIGGER_KEYS if merged.get(key) is not None]
    if len(triggers) != 1:
        found = ", ".join(triggers) if triggers else "none"
        problems.append(
            source.problem(
                where, f"job {name!r} needs exactly one trigger of {', '.join(TRIGGER_KEYS)} (found: {found})", key=True
            )
        )
    try:
        spec = JobSpec.model_validate(merged)
    except ValidationError as exc:
        for error in exc.errors():
            problems.append(_pydantic_problem(error, name, origin, source))
        return None
    for index, target in enumerate(spec.notify):  # a missing secret is caught at load, not at the first failure
        if target.secret_env is not None and not os.environ.get(target.secret_env):
            problems.append(
                source.problem(
                    (*origin["notify"], "notify", index, "secret_env"),
                    f"notify[{index}].secret_env: environment variable {target.secret_env!r} is not set (or empty)",
                )
            )
    if len(triggers) != 1:
        return None
    start, end = _local(spec.start, spec.timezone), _local(spec.end, spec.timezone)
    if start is not None and end is not None and end <= start:
        problems.append(
            source.problem((*origin["end"], "end"), f"end {end.isoformat()} is not after start {start.isoformat()}")
        )
        return None
    try:
        trigger = _trigger(spec)
    except TriggerError as exc:
        field_name = triggers[0]
        problems.append(source.problem((*origin[field_name], field_name), str(exc)))
        return None
    if start is not None or end is not None:
        trigger = WindowedTrigger(trigger, start, end)
    found_problems = (
        after_problems(spec, origin, where) if spec.after is not None else no_upstream_problems(spec, origin, where)
    )
    for path, message in found_problems:
        problems.append(source.problem(path, message))
    if found_problems:
        return None
    watch_root = None
    if spec.watch is not None:
        found = [
            ((*origin.get("parameters", where), "parameters", *key), message)
            for key, message in template_problems(spec.parameters, spec.watch.batch)
        ]
        for step, config in spec.steps.items():
            found += [
                ((*origin["steps"], "steps", step, "parameters", *key), "templates are filled in `parameters` only")
                for key in templated_paths(config.parameters)
            ]
        if spec.watch.readiness_conflict:
            found.append(((*origin["watch"], "watch", "ready_marker"), "use either settle or ready_marker, not both"))
        for path, message in found:
            problems.append(source.problem(path, message))
        if found:
            return None
        watch_root = Path(os.path.normpath(base / Path(spec.watch.path).expanduser()))
        refused = roots.problem(watch_root, spec.watch.recursive)
        if refused is not None:
            problems.append(source.problem((*origin["watch"], "watch", "path"), refused))
            return None
    return Job(name=name, spec=spec, trigger=trigger, watch_root=watch_root)


def _local(value: datetime | None, zone: str) -> datetime | None:
    """An instant from the file; without an offset it is read in the job's timezone."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=ZoneInfo(zone))


def _trigger(spec: JobSpec) -> Trigger:
    zone = ZoneInfo(spec.timezone)
    if spec.cron is not None:
        return CronTrigger(spec.cron, zone)
    if spec.every is not None:
        return IntervalTrigger(int(parse_duration(spec.every)))
    if spec.watch is not None:
        return FileTrigger(spec.watch.path)
    if spec.after is not None:
        return AfterTrigger(spec.after.describe)
    at = _local(spec.at, spec.timezone)
    assert at is not None
    return OneOffTrigger(at)


def _pydantic_problem(error: Any, job: str, origin: dict[str, tuple[str, ...]], source: SourceMap) -> Problem:
    loc = tuple(error["loc"])
    first = str(loc[0]) if loc else ""
    base = origin.get(first, ("jobs", job))
    path = (*base, *loc) if loc else ("jobs", job)
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1:
            return source.problem(path, _unknown_field(first), key=True)
        return source.problem(path, f"unknown key {loc[-1]!r}", key=True)
    if kind == "missing":
        return source.problem(
            ("jobs", job), f"job {job!r} is missing required field {'.'.join(map(str, loc))!r}", key=True
        )
    message = error["msg"].removeprefix("Value error, ")
    return source.problem(path, f"{'.'.join(map(str, loc))}: {message}")
