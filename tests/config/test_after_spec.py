"""`after:` jobs in schedules.yaml: the spec, loading, and every problem at its file:line:col."""

from __future__ import annotations

import ast
import importlib.util
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.config.after_spec import OUR_STATUSES, ZENML_STATUSES, AfterSpec, static_cycles
from scheduler.config.loader import parse_config
from scheduler.config.model import Config
from scheduler.errors import ConfigError
from scheduler.timing.triggers import AfterTrigger, WindowedTrigger

FILE = Path("/srv/project/schedules.yaml")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
# Job `up` fires every minute; job `down` has its own fields from line 8 on, indented by 4.
HEAD = "version: 1\njobs:\n  up:\n    pipeline: x.y:z\n    every: 1m\n  down:\n    pipeline: x.y:z\n"
FIELDS = (
    "status, job, pipeline, run_key, zenml_run_id, zenml_run_name, parameters, metadata, steps, artifacts, "
    "duration_s, finished_at"
)


def parse(text: str) -> Config:
    return parse_config(text, FILE, "rev")


def down(body: str) -> str:
    """A config whose job `down` has `body` (YAML, dedented) as its fields after `pipeline`."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "    ")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(problem) for problem in info.value.problems]


def at(line: int, column: int) -> str:
    return f"{FILE}:{line}:{column}: "


# ---- the spec -------------------------------------------------------------------------------


def test_the_finished_zenml_statuses_are_those_of_the_installed_zenml() -> None:
    """ZENML_STATUSES is written out so that the daemon never imports zenml; it must stay equal to
    ZenML's own list, `ExecutionStatus.is_finished`, read from its source (the test process does
    not import ZenML either)."""
    spec = importlib.util.find_spec("zenml")
    assert spec is not None and spec.origin is not None
    module = ast.parse((Path(spec.origin).parent / "enums.py").read_text())
    body = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "ExecutionStatus").body
    values = {a.targets[0].id: a.value.value for a in body if isinstance(a, ast.Assign)}  # type: ignore[attr-defined]
    is_finished = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == "is_finished")
    members = next(n for n in ast.walk(is_finished) if isinstance(n, ast.Set)).elts
    assert sorted(ZENML_STATUSES) == sorted(values[m.attr] for m in members)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "statuses", "debounce", "describe"),
    [
        ({"job": "drift-check"}, ("succeeded",), 0.0, "drift-check"),
        ({"pipeline": "drift_pipeline"}, ("succeeded",), 0.0, "pipeline drift_pipeline"),
        ({"job": "a", "status": ["failed", "timed_out", "failed"]}, ("failed", "timed_out"), 0.0, "a"),
        ({"pipeline": "p", "status": ["completed", "stopped"], "debounce": "5m"}, ("completed", "stopped"), 300.0,
         "pipeline p"),
        ({"job": "a", "debounce": "1s", "when": "status == 'succeeded'"}, ("succeeded",), 1.0, "a"),
        ({"pipeline": "p", "status": [*ZENML_STATUSES, "succeeded"]}, (*ZENML_STATUSES, "succeeded"), 0.0,
         "pipeline p"),
        ({"job": "a", "status": list(OUR_STATUSES)}, OUR_STATUSES, 0.0, "a"),
    ],
)  # fmt: skip
def test_a_valid_spec(data: dict[str, Any], statuses: tuple[str, ...], debounce: float, describe: str) -> None:
    spec = AfterSpec.model_validate(data)
    assert (spec.statuses, spec.debounce_seconds, spec.describe) == (statuses, debounce, describe)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs exactly one of job (a job of this file) or pipeline (a ZenML pipeline by name); found neither"),
        ({"job": "a", "pipeline": "p"}, "needs exactly one of job"),
        ({"job": "a", "status": []}, "list at least one status"),
        ({"pipeline": "p", "status": []}, "list at least one status"),
        ({"job": "a", "status": ["completed"]},
         "'completed' is not one of the statuses of after: job: (our run statuses): succeeded, failed, cancelled, "
         "timed_out, lost; 'completed' is a ZenML status, for after: pipeline:"),
        ({"pipeline": "p", "status": ["timed_out"]},
         "'timed_out' is not one of the statuses of after: pipeline: (ZenML run statuses): succeeded, completed, "
         "cached, failed, cancelled, stopped, skipped, retried; 'timed_out' is a status of our runs, for after: job:"),
        ({"pipeline": "p", "status": ["running"]}, "'running' is not one of the statuses of after: pipeline:"),
        ({"job": "a", "debounce": "500ms"}, "must be at least 1s"),
        ({"job": "a", "debounce": "soon"}, "expected a duration"),
        ({"job": " "}, "must name a job of this file"),
        ({"pipeline": ""}, "must name a ZenML pipeline"),
        ({"job": "a", "when": "  "}, "give a condition such as"),
        ({"job": "a", "wait": "5m"}, "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_an_invalid_spec(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AfterSpec.model_validate(data)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("data", "status", "ours", "expected"),
    [
        # after: job: speaks our statuses
        ({"job": "a"}, "succeeded", True, True),
        ({"job": "a"}, "failed", True, False),
        ({"job": "a", "status": ["failed", "timed_out"]}, "timed_out", True, True),
        ({"job": "a", "status": ["failed", "timed_out"]}, "succeeded", True, False),
        ({"job": "a"}, "completed", False, True),  # only success crosses vocabularies
        ({"job": "a"}, "cached", False, True),
        ({"job": "a", "status": ["failed"]}, "failed", False, False),
        # after: pipeline: speaks ZenML's
        ({"pipeline": "p"}, "completed", False, True),
        ({"pipeline": "p"}, "cached", False, True),
        ({"pipeline": "p"}, "failed", False, False),
        ({"pipeline": "p"}, "succeeded", False, True),
        ({"pipeline": "p", "status": ["completed"]}, "cached", False, False),
        ({"pipeline": "p", "status": ["completed"]}, "completed", False, True),
        ({"pipeline": "p", "status": ["failed", "stopped"]}, "stopped", False, True),
        ({"pipeline": "p", "status": ["failed"]}, "completed", False, False),
        ({"pipeline": "p"}, "succeeded", True, True),
        ({"pipeline": "p", "status": ["cached"]}, "succeeded", True, True),
        ({"pipeline": "p", "status": ["failed"]}, "failed", True, False),
    ],
)
def test_matches_status(data: dict[str, Any], status: str, ours: bool, expected: bool) -> None:
    assert AfterSpec.model_validate(data).matches_status(status, ours) is expected


@pytest.mark.parametrize(
    ("edges", "cycles"),
    [
        ({}, []),
        ({"a": "b"}, []),
        ({"a": "a"}, [["a"]]),
        ({"b": "c", "c": "a", "a": "b"}, [["a", "b", "c"]]),
        ({"c": "b", "b": "a", "a": "c"}, [["a", "c", "b"]]),
        ({"x": "a", "a": "b", "b": "a", "y": "x"}, [["a", "b"]]),  # jobs leading into a cycle are not in it
        ({"q": "p", "p": "q", "b": "a", "a": "b", "s": "s"}, [["a", "b"], ["p", "q"], ["s"]]),
        ({"a": "b", "b": "c", "c": "d"}, []),
    ],
)
def test_static_cycles(edges: dict[str, str], cycles: list[list[str]]) -> None:
    assert static_cycles(edges) == cycles


# ---- loading --------------------------------------------------------------------------------


def test_after_jobs_load_with_their_trigger() -> None:
    config = parse(
        down(
            """\
            after:
              job: up
              status: [succeeded, failed]
              when: "metadata.drift_score > 0.2"
              debounce: 5m
            parameters:
              data_url: "{upstream.parameters.data_url}"
              literal: "{{not a template}}"
            """
        )
        + "  other:\n    pipeline: x.y:z\n    after: {pipeline: drift_pipeline}\n"
    )
    job = config.jobs["down"]
    assert job.is_after and not job.is_watch
    assert job.after is not None and job.after.statuses == ("succeeded", "failed")
    assert job.trigger == AfterTrigger("up")
    assert job.trigger_text == "after up"
    assert job.first_fire_after(NOW) is None
    assert job.condition is not None and job.condition.text == "metadata.drift_score > 0.2"
    assert job.needs_upstream_details  # `when` reads metadata
    assert job.spec_dict()["after"]["debounce"] == "5m" and job.digest
    other = config.jobs["other"]
    assert other.trigger_text == "after pipeline drift_pipeline"
    assert other.condition is None and not other.needs_upstream_details
    assert not config.jobs["up"].is_after and config.jobs["up"].after is None
    assert config.jobs["up"].condition is None and not config.jobs["up"].needs_upstream_details


@pytest.mark.parametrize(
    ("body", "details"),
    [
        ("after: {job: up}\n", False),
        ("after: {job: up, when: \"status == 'succeeded' && duration_s < 60.0\"}\n", False),
        ('after: {job: up, when: "parameters.x == 1"}\n', False),
        ("after: {job: up, when: \"steps.all(s, s != 'x')\"}\n", True),
        ('after: {job: up, when: "has(artifacts.train)"}\n', True),
        ("after: {job: up}\nparameters: {a: '{upstream.zenml_run_id}', b: 'x-{upstream.parameters.b}'}\n", False),
        ("after: {job: up}\nparameters: {a: 'x-{upstream.metadata.score}'}\n", True),
        ("after: {job: up}\nsteps: {load: {parameters: {model: '{upstream.artifacts.train.model}'}}}\n", True),
    ],
)
def test_needs_upstream_details(body: str, details: bool) -> None:
    assert parse(down(body)).jobs["down"].needs_upstream_details is details


def test_an_after_job_with_a_window_keeps_its_after_trigger() -> None:
    job = parse(down("after: {job: up}\nstart: 2026-01-01T00:00:00Z\n")).jobs["down"]
    assert isinstance(job.trigger, WindowedTrigger) and job.trigger.inner == AfterTrigger("up")
    assert job.first_fire_after(NOW) is None


def test_a_timed_job_keeps_other_braces_as_written() -> None:
    """Today's rule for cron, every and at jobs: their parameters are passed as written."""
    job = parse(down("every: 1h\nparameters: {a: '{x}', b: '{', c: '{{upstream}}'}\n")).jobs["down"]
    assert job.spec.parameters == {"a": "{x}", "b": "{", "c": "{{upstream}}"}


# ---- problems, each at its place ------------------------------------------------------------

OURS = "succeeded, failed, cancelled, timed_out, lost"
TEMPLATES_ONLY_IN_AFTER = "{upstream...} templates are filled only in after: jobs, from the run they follow"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "after: {job: nope}\n",
            at(8, 18) + "after.job: no job 'nope' in this file (its jobs: up); for a pipeline run by anything, "
            "use after: pipeline:",
            id="unknown-job",
        ),
        pytest.param("after: {job: upp}\n", at(8, 18) + "after.job: no job 'upp' in this file; did you mean 'up'?",
                     id="close-job-name"),
        pytest.param("after: {job: down}\n", at(8, 18) + "after.job: a job cannot run after itself ('down')",
                     id="itself"),
        pytest.param("after: {job: up, pipeline: p}\n", at(8, 12) + "after: needs exactly one of job (a job of this "
                     "file) or pipeline (a ZenML pipeline by name); found both", id="both"),
        pytest.param("after: {}\n", at(8, 12) + "after: needs exactly one of job", id="neither"),
        pytest.param("after: {job: up, status: []}\n", at(8, 30) + "after.status: list at least one status",
                     id="empty-status"),
        pytest.param("after: {job: up, status: [completed]}\n",
                     at(8, 30) + f"after.status: 'completed' is not one of the statuses of after: job: (our run "
                     f"statuses): {OURS}; 'completed' is a ZenML status, for after: pipeline:",
                     id="zenml-status-for-job"),
        pytest.param("after: {pipeline: p, status: [timed_out]}\n",
                     at(8, 34) + "after.status: 'timed_out' is not one of the statuses of after: pipeline:",
                     id="our-status-for-pipeline"),
        pytest.param("after: {job: up, debounce: 500ms}\n", at(8, 32) + "after.debounce: must be at least 1s",
                     id="short-debounce"),
        pytest.param("after: {job: up, debounce: soon}\n", at(8, 32) + "after.debounce: expected a duration",
                     id="bad-debounce"),
        pytest.param("after: {job: up, wait: 5m}\n", at(8, 22) + "unknown key 'wait'", id="unknown-key"),
        pytest.param("after: up\n", at(8, 12) + "after: Input should be a valid dictionary", id="not-a-mapping"),
        pytest.param("after: {job: up}\ncron: '* * * * *'\n",
                     at(6, 3) + "job 'down' needs exactly one trigger of cron, every, at, watch, after "
                     "(found: cron, after)", id="two-triggers"),
        pytest.param(
            "after:\n  job: up\n  when: 'metadata.x >'\n",
            at(10, 13) + "after.when: the condition ends too soon (something is missing at its end) "
            "(column 13 of the expression)",
            id="when-syntax",
        ),
        pytest.param(
            "after:\n  job: up\n  when: 'metadata.x > 0.2 ) '\n",
            at(10, 13) + "after.when: syntax error: unexpected ')' (column 18 of the expression)",
            id="when-stray-parenthesis",
        ),
        pytest.param(
            "after:\n  job: up\n  when: 'metdata.x > 0.2'\n",
            at(10, 13) + f"after.when: unknown name 'metdata'; did you mean metadata? the upstream run has {FIELDS} "
            "(column 1 of the expression)",
            id="when-unknown-name",
        ),
        pytest.param(
            "after:\n  job: up\n  when: 'metadata.x > 0.2 && bogus'\n",
            at(10, 13) + "after.when: unknown name 'bogus'; the upstream run has",
            id="when-unknown-name-later",
        ),
        pytest.param(
            "after:\n  job: up\n  when: 'steps.all(s, s > 1) && s'\n",
            at(10, 13) + f"after.when: unknown name 's'; the upstream run has {FIELDS} (column 24 of the expression)",
            id="when-macro-variable-out-of-scope",
        ),
        pytest.param(
            "after:\n  job: up\n  when: |\n    metadata.x > 0.2 &&\n      sizes(metadata.l) > 1\n",
            at(10, 13) + "after.when: unknown function 'sizes'; did you mean size()? "
            "(line 2, column 3 of the expression)",
            id="when-unknown-function-on-line-2",
        ),
        pytest.param(
            "after: {job: up, when: '" + "x" * 1001 + "'}\n",
            at(8, 28) + "after.when: the condition is 1001 characters long; at most 1000 are allowed",
            id="when-too-long",
        ),
        pytest.param(
            "after: {job: up}\nparameters:\n  a: '{upstream.bogus}'\n",
            at(10, 10) + f"unknown upstream field 'bogus' in '{{upstream.bogus}}'; the upstream run has {FIELDS}",
            id="template-unknown-field",
        ),
        pytest.param(
            "after: {job: up}\nparameters:\n  a: 'data/{x}.csv'\n",
            at(10, 10) + "unknown template {x} in 'data/{x}.csv'; after: jobs fill {upstream.<field>} templates",
            id="template-other-name",
        ),
        pytest.param(
            "after: {job: up}\nparameters:\n  a: '{upstream.status:>5}'\n",
            at(10, 10) + "template '{upstream.status:>5}': format specs and conversions are not supported",
            id="template-format-spec",
        ),
        pytest.param(
            "after: {job: up}\nparameters:\n  a: '{upstream.status.x}'\n",
            at(10, 10) + "template {upstream.status.x}: upstream.status is a single value with no keys",
            id="template-key-of-a-single-value",
        ),
        pytest.param(
            "after: {job: up}\nparameters:\n  a: ['ok', {b: '{upstream'}]\n",
            at(10, 21)
            + "bad template '{upstream': expected '}' before end of string; write {{ and }} for literal braces",
            id="template-unbalanced",
        ),
        pytest.param(
            "after: {job: up}\nsteps:\n  load: {parameters: {source: '{upstream.nope}'}}\n",
            at(10, 35) + "unknown upstream field 'nope'",
            id="template-in-steps",
        ),
        pytest.param(
            "every: 1m\nparameters: {a: '{upstream.parameters.x}'}\n",
            at(9, 21) + TEMPLATES_ONLY_IN_AFTER,
            id="upstream-template-in-timed-job",
        ),
        pytest.param(
            "cron: '0 * * * *'\nsteps: {load: {parameters: {source: 'in/{upstream.run_key}'}}}\n",
            at(9, 41) + TEMPLATES_ONLY_IN_AFTER,
            id="upstream-template-in-timed-job-step",
        ),
        pytest.param(
            "watch: {path: in}\nparameters: {a: '{upstream.zenml_run_id}'}\n",
            at(9, 21) + "{upstream.zenml_run_id} is filled only in after: jobs; per_file allows {path}, {name}, {stem}",
            id="upstream-template-in-watch-job",
        ),
    ],
)  # fmt: skip
def test_problems_are_positioned(body: str, expected: str) -> None:
    found = errors(down(body))
    assert any(problem.startswith(expected) for problem in found), found


def test_defaults_cannot_set_after() -> None:
    found = errors("version: 1\ndefaults:\n  after: {job: a}\njobs:\n  a: {pipeline: x.y:z, every: 1m}\n")
    assert found == [
        at(3, 3) + "defaults cannot set after: every job without a trigger of its own would run after the same "
        "upstream; give after: to each job that needs it"
    ]


CYCLE = """\
version: 1
jobs:
  c:
    pipeline: x.y:z
    after: {job: a}
  a:
    pipeline: x.y:z
    after: {job: b}
  b:
    pipeline: x.y:z
    after: {job: c}
  feeds-in:
    pipeline: x.y:z
    after: {job: a}
  root:
    pipeline: x.y:z
    every: 1h
  chained:
    pipeline: x.y:z
    after: {job: root}
"""


def test_a_cycle_of_three_is_refused_at_every_after_job_in_it() -> None:
    message = "cycle of after: triggers: a -> b -> c -> a (each runs after the next, so none would ever start)"
    assert errors(CYCLE) == [at(5, 18) + message, at(8, 18) + message, at(11, 18) + message]


def test_two_cycles_and_a_self_cycle_are_each_reported() -> None:
    text = """\
version: 1
jobs:
  p: {pipeline: x.y:z, after: {job: q}}
  q: {pipeline: x.y:z, after: {job: p}}
  me: {pipeline: x.y:z, after: {job: me}}
  x: {pipeline: x.y:z, after: {job: y}}
  y: {pipeline: x.y:z, after: {job: x}}
"""
    pq = "cycle of after: triggers: p -> q -> p"
    xy = "cycle of after: triggers: x -> y -> x"
    found = errors(text)
    assert [problem.split(" (each")[0] for problem in found] == [
        at(3, 37) + pq,
        at(4, 37) + pq,
        at(5, 38) + "after.job: a job cannot run after itself ('me')",
        at(6, 37) + xy,
        at(7, 37) + xy,
    ]


def test_an_upstream_job_refused_for_its_own_problem_is_not_called_unknown() -> None:
    text = down("after: {job: up}\n").replace("every: 1m", "every: soon")
    found = errors(text)
    assert len(found) == 1 and "every" in found[0] and "after.job" not in found[0]
