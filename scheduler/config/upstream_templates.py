"""Templates that fill an after job's parameters from the upstream run (pure).

In `parameters` and in `steps.<step>.parameters` of an after job, ``{upstream.<field>}`` and
``{upstream.<field>.<key>...}`` stand for a value of the upstream run's view (the fields of
`scheduler.config.conditions.UPSTREAM_FIELDS`); a key that is a number also indexes a list
(``{upstream.parameters.urls.0}``). ``{{`` and ``}}`` are literal braces. A value that is
exactly one template takes the upstream value as it is (a number stays a number, a list a
list); a template inside longer text is written with str(), and there a null is refused.
"""

from __future__ import annotations

import copy
import difflib
import string
from typing import Any

from scheduler.config.conditions import DETAIL_FIELDS, UPSTREAM_FIELDS
from scheduler.config.watch_spec import KeyPath, string_values

ROOT = "upstream"
# Fields with keys below them; the others are single values.
MAPPING_FIELDS = ("parameters", "metadata", "steps", "artifacts")
EXAMPLE = "{upstream.parameters.data_url}"


class TemplateError(ValueError):
    """A template that cannot be filled from this upstream run (a missing key, a null in text)."""


def template_problems(parameters: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """(path under `parameters`, message) for every template an after job may not use."""
    problems = []
    for key, value in string_values(parameters, ()):
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            problems.append((key, f"bad template {value!r}: {exc}; write {{{{ and }}}} for literal braces"))
            continue
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            message = _field_problem(name, value)
            if message is None and (spec or conversion):
                message = f"template {value!r}: format specs and conversions are not supported"
            if message is not None:
                problems.append((key, message))
    return problems


def upstream_template_paths(parameters: dict[str, Any]) -> list[KeyPath]:
    """Where in `parameters` an ``{upstream...}`` template is written (for jobs that are not
    after jobs, which have no upstream run to fill it from)."""
    return [key for key, value in string_values(parameters, ()) if any(_is_upstream(n) for n in _names(value))]


def reads_details(parameters: dict[str, Any]) -> bool:
    """Whether a template reads metadata, steps or artifacts: those need the ZenML record of the
    upstream run, which the daemon then waits for."""
    return any(
        _parts(name)[1:2] and _parts(name)[1] in DETAIL_FIELDS
        for _, value in string_values(parameters, ())
        for name in _names(value)
        if _is_upstream(name)
    )


def render(parameters: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """`parameters` with every template filled from `view` (and ``{{``/``}}`` made single);
    TemplateError naming the template when a path is missing or a null would be written in text."""
    return {key: _render(value, view) for key, value in parameters.items()}


def has_template(value: Any) -> bool:
    """Whether rendering can change `value`: it holds a string with a brace (a template or an
    escaped brace)."""
    return any("{" in text or "}" in text for _, text in string_values(value, ()))


def _render(value: Any, view: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_text(value, view) if "{" in value or "}" in value else value
    if isinstance(value, dict):
        return {key: _render(child, view) for key, child in value.items()}
    if isinstance(value, list):
        return [_render(child, view) for child in value]
    return value


def _render_text(text: str, view: dict[str, Any]) -> Any:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(f"bad template {text!r}: {exc}") from None
    if len(parsed) == 1 and parsed[0][0] == "" and parsed[0][1] is not None:  # exactly one template
        return copy.deepcopy(_resolve(parsed[0][1], view))
    pieces = []
    for literal, name, _, _ in parsed:
        pieces.append(literal)
        if name is None:
            continue
        found = _resolve(name, view)
        if found is None:
            raise TemplateError(f"{{{name}}} is null for this upstream run, so it cannot be written inside {text!r}")
        pieces.append(str(found))
    return "".join(pieces)


def _resolve(name: str, view: dict[str, Any]) -> Any:
    problem = _field_problem(name, name)
    if problem is not None:
        raise TemplateError(problem)
    parts = _parts(name)[1:]
    if parts[0] not in view:
        raise TemplateError(f"{{{name}}}: the upstream run has no {parts[0]!r}")
    value = view[parts[0]]
    for depth, part in enumerate(parts[1:], start=2):
        above = ".".join(parts[: depth - 1])
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, (dict, list)):
            raise TemplateError(f"{{{name}}}: upstream.{above} has no {part!r} for this upstream run")
        else:
            shown = "null" if value is None else type(value).__name__
            raise TemplateError(f"{{{name}}}: upstream.{above} is {shown} for this upstream run, not a mapping")
    return value


def _field_problem(name: str, value: str) -> str | None:
    """Why `{name}` (in `value`) is not an upstream template, or None when it is one."""
    parts = _parts(name)
    if parts[0] != ROOT:
        return (
            f"unknown template {{{name}}} in {value!r}; after: jobs fill {{upstream.<field>}} templates such as "
            f"{EXAMPLE} (write {{{{ and }}}} for literal braces)"
        )
    if len(parts) == 1:
        return f"{{{name}}} names no field: write {{upstream.<field>}} with one of {', '.join(UPSTREAM_FIELDS)}"
    if any(not part for part in parts) or "[" in name or "]" in name:
        return f"template {{{name}}}: write keys with dots, as in {{upstream.parameters.urls.0}}"
    field = parts[1]
    if field not in UPSTREAM_FIELDS:
        close = difflib.get_close_matches(field, UPSTREAM_FIELDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown upstream field {field!r} in {value!r}; {hint}the upstream run has {', '.join(UPSTREAM_FIELDS)}"
    if len(parts) > 2 and field not in MAPPING_FIELDS:
        return f"template {{{name}}}: upstream.{field} is a single value with no keys; write {{upstream.{field}}}"
    return None


def _names(value: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError:
        return []


def _is_upstream(name: str) -> bool:
    return _parts(name)[0] == ROOT


def _parts(name: str) -> list[str]:
    return name.split(".")
