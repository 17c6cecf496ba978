"""ZenML's "trigger pipelines from external systems" tutorial body, `{"pipeline_name", "steps"}`, mapped
onto the overrides of `scheduler.api.overrides` (pure): which declared job the pipeline name means,
and whether each step input is a pipeline parameter or a step input of that job."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.api.overrides import Loc, OverrideError, OverrideProblem, Overrides, resolve_overrides, step_inputs
from scheduler.config.model import Config, Job


def jobs_for_pipeline(config: Config, pipeline_name: str) -> list[str]:
    """The jobs (enabled or not, in file order) that run the pipeline called `pipeline_name`: its
    ZenML name when the config was checked, else the attribute of ``package.module:attribute``."""
    return [
        name
        for name, job in config.jobs.items()
        if pipeline_name_of(job, config.pipeline_description(name)) == pipeline_name
    ]


def pipeline_name_of(job: Job, description: Mapping[str, Any] | None) -> str:
    """The ZenML name of the job's pipeline (from `description`), else its attribute name."""
    name = description.get("name") if description else None
    return name if isinstance(name, str) and name else job.spec.pipeline.rpartition(":")[2]


def tutorial_body(job: Job, description: Mapping[str, Any] | None, steps: Any) -> dict[str, Any]:
    """Map the ``steps`` of a tutorial-style ``POST /trigger`` onto a `resolve_overrides` body.

    A step input the pipeline body passes straight from the pipeline parameter of the same name
    (the tutorial's ``load_data.data_url``) becomes ``parameters.<name>``, as the tutorial's wrapper
    does; an input the body leaves open stays ``steps.<step>.parameters.<input>``. Without a
    description the allow-list decides: the step key if listed, else ``parameters.<input>`` if
    listed, else the step key (which validation then refuses).

    Raises:
        OverrideError: For a malformed ``steps``, an unknown step or input, an input the body
            passes from elsewhere (another step, code, a differently named parameter), or two steps
            setting the same pipeline parameter to different values.
    """
    body, _, problems = _map_tutorial(job, description, steps)
    if problems:
        raise OverrideError(problems)
    return body


def tutorial_overrides(job: Job, description: Mapping[str, Any] | None, steps: Any) -> Overrides:
    """`tutorial_body` followed by `resolve_overrides`, with every problem located where the caller
    put the value (``["body", "steps", <step>, "parameters", <input>]``).

    Raises:
        OverrideError: Listing the problems of both stages.
    """
    body, origins, problems = _map_tutorial(job, description, steps)
    overrides = Overrides()
    try:
        overrides = resolve_overrides(job, description, body)
    except OverrideError as exc:
        problems += [_at_origin(problem, origins) for problem in exc.problems]
    if problems:
        raise OverrideError(problems)
    return overrides


Origins = dict[Loc, tuple[Loc, str]]  # body loc -> (the caller's loc, the caller's key)


def _map_tutorial(
    job: Job, description: Mapping[str, Any] | None, steps: Any
) -> tuple[dict[str, Any], Origins, list[OverrideProblem]]:
    """The body `tutorial_body` describes, where each of its values came from, and the problems."""
    problems: list[OverrideProblem] = []
    body: dict[str, Any] = {"parameters": {}, "steps": {}}
    origins: Origins = {}
    traced = (description or {}).get("steps") or {}
    setters: dict[str, str] = {}  # pipeline parameter -> the step that set it
    for step, inputs in step_inputs(steps, problems).items():
        for name, value in inputs.items():
            loc: Loc = ("body", "steps", step, "parameters", name)
            key = f"steps.{step}.parameters.{name}"
            target = _target(job, traced, step, name) if traced else _allow_listed(job, step, name)
            if isinstance(target, OverrideProblem):
                problems.append(OverrideProblem(loc, f"{key}: {target.msg}", target.type))
            elif target == "parameter":
                first = setters.setdefault(name, step)
                if first != step and body["parameters"][name] != value:
                    msg = f"{key}: sets pipeline parameter {name!r} to another value than steps.{first} does"
                    problems.append(OverrideProblem(loc, msg, "conflict"))
                body["parameters"][name] = value
                origins.setdefault(
                    ("body", "parameters", name), (loc, f"the request's {key}, applied as parameters.{name}")
                )
            else:
                body["steps"].setdefault(step, {"parameters": {}})["parameters"][name] = value
    return body, origins, problems


def _allow_listed(job: Job, step: str, name: str) -> str:
    allowed = job.spec.api.overridable
    step_key = f"steps.{step}.parameters.{name}"
    return "parameter" if step_key not in allowed and f"parameters.{name}" in allowed else "step"


def _target(job: Job, traced: Mapping[str, Any], step: str, name: str) -> str | OverrideProblem:
    """Where a tutorial step input goes: "parameter", "step", or why neither works."""
    info = traced.get(step)
    if not isinstance(info, Mapping):
        msg = f"unknown step {step!r} in job {job.name!r}; its steps are: {', '.join(traced)}"
        return OverrideProblem((), msg, "unknown_step")
    if name not in info.get("inputs", []):
        msg = f"step {step!r} has no input {name!r}; its inputs are: {', '.join(info.get('inputs', [])) or '(none)'}"
        return OverrideProblem((), msg, "unknown_input")
    source = (info.get("from_parameter") or {}).get(name)
    if source == name:
        return "parameter"
    if name not in info.get("wired", []):
        return "step"
    if source is not None:
        hint = f"from pipeline parameter {source!r}; set parameters.{source} instead (POST /v1/jobs/<job>/runs)"
    else:
        hint = "from another step or a value fixed in the pipeline code, so no request can set it"
    return OverrideProblem(
        (), f"cannot be applied: the pipeline passes input {name!r} of step {step!r} itself ({hint})", "not_applicable"
    )


def _at_origin(problem: OverrideProblem, origins: Origins) -> OverrideProblem:
    """A problem of the mapped body, located and named as the caller sent it."""
    for prefix, (loc, sent) in origins.items():
        if problem.loc[: len(prefix)] == prefix:
            return OverrideProblem((*loc, *problem.loc[len(prefix) :]), f"{problem.msg} ({sent})", problem.type)
    return problem
