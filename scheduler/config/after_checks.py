"""The loader's checks of after jobs: their condition and templates, `{upstream...}` outside them,
and the upstream jobs they name (which must exist and form no cycle)."""

from __future__ import annotations

import difflib

from scheduler.config import upstream_templates
from scheduler.config.after_spec import static_cycles
from scheduler.config.conditions import ConditionError, compile_condition
from scheduler.config.job_spec import JobSpec
from scheduler.config.model import Job
from scheduler.config.watch_spec import KeyPath
from scheduler.config.yaml_source import SourceMap
from scheduler.errors import Problem

Origin = dict[str, tuple[str, ...]]


def after_problems(spec: JobSpec, origin: Origin, where: tuple[str, ...]) -> list[tuple[KeyPath, str]]:
    """An after job's condition and templates (its upstream job is checked once all jobs are built)."""
    assert spec.after is not None
    found: list[tuple[KeyPath, str]] = []
    if spec.after.when is not None:
        try:
            compile_condition(spec.after.when)
        except ConditionError as exc:
            at = f" ({exc.where})" if exc.where else ""
            found.append(((*origin["after"], "after", "when"), f"after.when: {exc.message}{at}"))
    found += [
        ((*origin.get("parameters", where), "parameters", *key), message)
        for key, message in upstream_templates.template_problems(spec.parameters)
    ]
    for step, config in spec.steps.items():
        found += [
            ((*origin["steps"], "steps", step, "parameters", *key), message)
            for key, message in upstream_templates.template_problems(config.parameters)
        ]
    return found


def no_upstream_problems(spec: JobSpec, origin: Origin, where: tuple[str, ...]) -> list[tuple[KeyPath, str]]:
    """`{upstream...}` outside after jobs: nothing fills it (a watch job's own template check
    says so for its `parameters`; other braces in a timed job's parameters stay as written)."""
    message = "{upstream...} templates are filled only in after: jobs, from the run they follow"
    found: list[tuple[KeyPath, str]] = []
    if spec.watch is None:
        found += [
            ((*origin.get("parameters", where), "parameters", *key), message)
            for key in upstream_templates.upstream_template_paths(spec.parameters)
        ]
    for step, config in spec.steps.items():
        found += [
            ((*origin["steps"], "steps", step, "parameters", *key), message)
            for key in upstream_templates.upstream_template_paths(config.parameters)
        ]
    return found


def upstream_job_problems(jobs: dict[str, Job], names: list[str], source: SourceMap) -> list[Problem]:
    """`after.job` must name another job of the file, and `after: job:` edges may not close a cycle
    (one problem per job of a cycle, at its after.job)."""
    problems = []
    edges: dict[str, str] = {}
    for name, job in jobs.items():
        upstream = job.after.job if job.after is not None else None
        if upstream is None:
            continue
        at = ("jobs", name, "after", "job")
        if upstream == name:
            problems.append(source.problem(at, f"after.job: a job cannot run after itself ({name!r})"))
        elif upstream not in names:
            problems.append(source.problem(at, f"after.job: {_unknown_job(upstream, [n for n in names if n != name])}"))
        else:
            edges[name] = upstream
    for cycle in static_cycles(edges):
        text = " -> ".join([*cycle, cycle[0]])
        for name in cycle:
            message = f"cycle of after: triggers: {text} (each runs after the next, so none would ever start)"
            problems.append(source.problem(("jobs", name, "after", "job"), message))
    return problems


def _unknown_job(upstream: str, others: list[str]) -> str:
    close = difflib.get_close_matches(upstream, others, n=3)
    if close:
        return f"no job {upstream!r} in this file; did you mean {' or '.join(map(repr, close))}?"
    pipeline = "for a pipeline run by anything, use after: pipeline:"
    if not others:
        return f"no job {upstream!r} in this file (it has no other job); {pipeline}"
    shown = ", ".join(others[:10]) + (f" and {len(others) - 10} more" if len(others) > 10 else "")
    return f"no job {upstream!r} in this file (its jobs: {shown}); {pipeline}"
