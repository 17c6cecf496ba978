"""What an HTTP caller may override when it starts a run, checked without ZenML (pure).

A job lists what may be overridden in ``api.overridable``: ``parameters.<name>`` (a pipeline
parameter) and ``steps.<step>.parameters.<input>`` (a step input the pipeline body leaves open).
Everything else is refused. Values are validated against the JSON Schema (Draft 2020-12) that the
pipeline check derived from the pipeline's annotations (`Config.pipeline_description`), so strictly
by JSON type: ``"5"`` is not an integer here, although ZenML itself would coerce it.

When the daemon runs without the pipeline check (``--no-check-pipelines``) there is no description:
the allow-list still applies, but the values of allowed keys are accepted unchecked (a wrong one
fails the run in ZenML instead), and `scheduler.api.tutorial` can only follow the allow-list.

Every function collects all problems and raises one `OverrideError`; each problem has the
location in the request (``loc``, as FastAPI reports it), a message and a short type.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from scheduler.config.model import Job

Loc = tuple[str | int, ...]
BODY_FIELDS = ("parameters", "steps")


@dataclass(frozen=True)
class OverrideProblem:
    """One thing wrong with a request: where (``loc``), what (``msg``) and its kind (``type``)."""

    loc: Loc
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        """The problem as one entry of a 422 response's ``detail``."""
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class OverrideError(ValueError):
    """The requested overrides were refused; `problems` lists every reason."""

    def __init__(self, problems: list[OverrideProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(problem.msg for problem in self.problems))


@dataclass(frozen=True)
class Overrides:
    """Accepted overrides: pipeline parameters, and step inputs as step -> input -> value."""

    parameters: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)


def resolve_overrides(job: Job, description: Mapping[str, Any] | None, body: Any) -> Overrides:
    """Check a run request's body ``{"parameters": {...}, "steps": {"<step>": {"parameters": {...}}}}``.

    Each key must be listed in the job's ``api.overridable`` and each value must fit the schema in
    `description` (unchecked without one). Both fields are optional; anything else is refused.

    Raises:
        OverrideError: Listing every problem, with ``loc`` starting at ``"body"``.
    """
    problems: list[OverrideProblem] = []
    if not isinstance(body, Mapping):
        raise OverrideError([not_mapping(("body",), "an object with 'parameters' and/or 'steps'", body)])
    problems += [unknown_field(("body", key), BODY_FIELDS) for key in body if key not in BODY_FIELDS]
    parameters: dict[str, Any] = {}
    given = body.get("parameters", {})
    if not isinstance(given, Mapping):
        problems.append(not_mapping(("body", "parameters"), "an object of parameter names to values", given))
        given = {}
    for name, value in given.items():
        key, loc = f"parameters.{name}", ("body", "parameters", name)
        found = _check(job, key, value, _parameter_schema(description, name), loc)
        problems += found
        if not found:
            parameters[name] = value
    steps: dict[str, dict[str, Any]] = {}
    for step, inputs in step_inputs(body.get("steps", {}), problems).items():
        for name, value in inputs.items():
            key, loc = f"steps.{step}.parameters.{name}", ("body", "steps", step, "parameters", name)
            found = _check(job, key, value, _input_schema(description, step, name), loc)
            problems += found
            if not found:
                steps.setdefault(step, {})[name] = value
    if problems:
        raise OverrideError(problems)
    return Overrides(parameters, steps)


# ---- checking one value -------------------------------------------------------------------------


def _check(job: Job, key: str, value: Any, schema: Any, loc: Loc) -> list[OverrideProblem]:
    allowed = job.spec.api.overridable
    if key not in allowed:
        if not allowed:
            why = f"job {job.name!r} allows no overrides (its api.overridable is empty)"
        else:
            why = f"job {job.name!r} allows only: {', '.join(allowed)}"
        return [OverrideProblem(loc, f"{key} may not be overridden: {why}", "not_overridable")]
    if not isinstance(schema, dict) or not schema:
        return []
    errors = sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    return [OverrideProblem((*loc, *error.absolute_path), _type_message(key, error), "type_error") for error in errors]


def _type_message(key: str, error: ValidationError) -> str:
    where = key + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path)
    expected = _expected(error.schema) if error.validator in ("type", "anyOf", "oneOf", "enum", "const") else None
    if expected is None:
        return f"{where}: {error.message}"
    return f"{where}: expected {expected}, got {_shown(error.instance)}"


def _expected(schema: Any) -> str | None:
    """A short name for what `schema` accepts ("integer", "string or null", "one of 'a', 'b'")."""
    if not isinstance(schema, Mapping):
        return None
    if "enum" in schema:
        return "one of " + ", ".join(repr(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    for combined in ("anyOf", "oneOf"):
        if combined in schema:
            names = [_expected(sub) for sub in schema[combined]]
            return None if None in names else " or ".join(dict.fromkeys(n for n in names if n))
    if "$ref" in schema:
        return str(schema["$ref"]).rpartition("/")[2] or None
    kinds = schema.get("type")
    if isinstance(kinds, list):
        return " or ".join(map(str, kinds))
    if kinds == "array" and _expected(schema.get("items")):
        return f"array of {_expected(schema['items'])}"
    return str(kinds) if kinds else None


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{text if len(text) <= 80 else text[:77] + '...'} ({type(value).__name__})"


def _parameter_schema(description: Mapping[str, Any] | None, name: str) -> Any:
    parameter = ((description or {}).get("parameters") or {}).get(name) or {}
    return parameter.get("schema")


def _input_schema(description: Mapping[str, Any] | None, step: str, name: str) -> Any:
    invocation = ((description or {}).get("steps") or {}).get(step) or {}
    return (invocation.get("schemas") or {}).get(name)


# ---- shapes -------------------------------------------------------------------------------------


def not_mapping(loc: Loc, expected: str, value: Any) -> OverrideProblem:
    return OverrideProblem(
        loc, f"{'.'.join(map(str, loc[1:])) or 'body'}: expected {expected}, got {_shown(value)}", "not_a_mapping"
    )


def unknown_field(loc: Loc, allowed: tuple[str, ...]) -> OverrideProblem:
    return OverrideProblem(loc, f"unknown field {loc[-1]!r}; allowed: {', '.join(allowed)}", "unknown_field")


# ---- the tutorial's /trigger --------------------------------------------------------------------


def step_inputs(steps: Any, problems: list[OverrideProblem]) -> dict[str, Mapping[str, Any]]:
    """``{"<step>": {"parameters": {...}}}`` as step -> inputs, the malformed parts reported."""
    if not isinstance(steps, Mapping):
        problems.append(not_mapping(("body", "steps"), 'an object like {"<step>": {"parameters": {...}}}', steps))
        return {}
    found: dict[str, Mapping[str, Any]] = {}
    for step, config in steps.items():
        loc: Loc = ("body", "steps", step)
        if not isinstance(config, Mapping):
            problems.append(not_mapping(loc, 'an object like {"parameters": {...}}', config))
            continue
        problems += [unknown_field((*loc, key), ("parameters",)) for key in config if key != "parameters"]
        inputs = config.get("parameters", {})
        if not isinstance(inputs, Mapping):
            problems.append(not_mapping((*loc, "parameters"), "an object of input names to values", inputs))
            continue
        found[step] = inputs
    return found
