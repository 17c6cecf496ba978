"""`watch:` jobs in schedules.yaml: loading, file-run defaults, positioned errors, and parameter templates."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.config.loader import parse_config
from scheduler.config.model import Config
from scheduler.config.watch_spec import WatchSpec, render_parameters, template_problems, templated_keys
from scheduler.errors import ConfigError
from scheduler.timing.triggers import FileTrigger

FILE = Path("/srv/project/schedules.yaml")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HEAD = "version: 1\njobs:\n  w:\n    pipeline: x.y:z\n"  # the job's own fields start on line 5


def parse(text: str, path: Path = FILE) -> Config:
    return parse_config(text, path, "rev")


def job(body: str) -> str:
    """A config whose job `w` has `body` (YAML, dedented) as its fields after `pipeline`."""
    return HEAD + textwrap.indent(textwrap.dedent(body), "    ")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(problem) for problem in info.value.problems]


def at(line: int, column: int) -> str:
    return f"{FILE}:{line}:{column}: "


# ---- loading --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("inbox", "conf/inbox"),
        ("data/incoming/", "conf/data/incoming"),
        ("../shared/./in", "shared/in"),
    ],
)
def test_a_watch_job_resolves_relative_paths_against_the_config_folder(
    tmp_path: Path, written: str, expected: str
) -> None:
    config = parse(job(f"watch: {{path: '{written}'}}\n"), tmp_path / "conf" / "schedules.yaml")
    watch = config.jobs["w"]
    assert watch.is_watch
    assert watch.watch_root == tmp_path.resolve() / expected
    assert watch.trigger_text == f"watch {written}"
    assert watch.first_fire_after(NOW) is None
    assert isinstance(watch.trigger, FileTrigger)


def test_an_absolute_watch_path_is_kept(tmp_path: Path) -> None:
    config = parse(job("watch: {path: /var/spool/in}\n"), tmp_path / "conf" / "schedules.yaml")
    assert config.jobs["w"].watch_root == Path("/var/spool/in")
    assert config.jobs["w"].trigger_text == "watch /var/spool/in"


def test_a_home_relative_watch_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    config = parse(job("watch: {path: ~/drop}\n"), tmp_path / "schedules.yaml")
    assert config.jobs["w"].watch_root == Path("/home/ops/drop")


def test_a_cron_job_is_not_a_watch_job() -> None:
    config = parse(job('cron: "0 * * * *"\n'))
    assert not config.jobs["w"].is_watch
    assert config.jobs["w"].watch_root is None
    assert config.jobs["w"].first_fire_after(NOW) == datetime(2026, 3, 1, 13, 0, tzinfo=timezone.utc)


def test_watch_fields_load_as_written() -> None:
    config = parse(
        job(
            """\
            watch:
              path: in
              patterns: ["*.csv", "*.parquet"]
              recursive: true
              batch: per_batch
              batch_window: 30s
              max_batch: 50
              on_modified: retrigger
              poll: true
            parameters: {inputs: "{paths}"}
            """
        )
    )
    spec = config.jobs["w"].spec.watch
    assert spec is not None
    assert spec.patterns == ["*.csv", "*.parquet"]
    assert spec.ignore == [".*", "*.tmp", "*.part", "*~"]
    assert (spec.recursive, spec.batch, spec.max_batch, spec.on_modified, spec.poll) == (
        True,
        "per_batch",
        50,
        "retrigger",
        True,
    )
    assert (spec.window_seconds, spec.scan_seconds, spec.settle_seconds) == (30.0, 1.0, 2.0)


@pytest.mark.parametrize(
    ("body", "concurrency", "catchup"),
    [
        ("watch: {path: in}\n", "allow", "all"),
        ("watch: {path: in}\nconcurrency: queue\n", "queue", "all"),
        ("watch: {path: in}\ncatchup: none\n", "allow", "none"),
        ("watch: {path: in}\nconcurrency: skip\ncatchup: latest\n", "skip", "latest"),
        ('cron: "0 * * * *"\n', "skip", "latest"),
        ("every: 5m\n", "skip", "latest"),
    ],
)
def test_file_run_defaults_apply_to_watch_jobs_only(body: str, concurrency: str, catchup: str) -> None:
    spec = parse(job(body)).jobs["w"].spec
    assert (spec.concurrency, spec.catchup) == (concurrency, catchup)


def test_literal_braces_are_allowed() -> None:
    config = parse(job('watch: {path: in}\nparameters: {a: "{{literal}}", b: "{{x}}/{stem}.out", c: "}}"}\n'))
    assert config.jobs["w"].spec.parameters == {"a": "{{literal}}", "b": "{{x}}/{stem}.out", "c": "}}"}


# ---- errors ---------------------------------------------------------------------------------

PER_FILE_ALLOWED = "per_file allows {path}, {name}, {stem}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            'watch: {path: in}\nparameters:\n  ok: "{path}"\n  bad: "{bogus}"\n',
            at(8, 12) + f"unknown template {{bogus}} in '{{bogus}}'; {PER_FILE_ALLOWED}",
            id="unknown-name",
        ),
        pytest.param(
            'watch: {path: in}\nparameters:\n  inputs: "{paths}"\n',
            at(7, 15) + f"unknown template {{paths}} in '{{paths}}'; {PER_FILE_ALLOWED}",
            id="paths-in-per-file",
        ),
        pytest.param(
            'watch: {path: in, batch: per_batch}\nparameters:\n  input: "{path}"\n',
            at(7, 14) + "unknown template {path} in '{path}'; per_batch allows {paths}",
            id="path-in-per-batch",
        ),
        pytest.param(
            'watch: {path: in, batch: per_batch}\nparameters:\n  inputs: "files: {paths}"\n',
            at(7, 15) + "{paths} is a list of files and must be the whole value",
            id="paths-embedded",
        ),
        pytest.param(
            'watch: {path: in, batch: per_batch}\nparameters:\n  inputs: ["{paths}", "x"]\n  n: "{paths}{paths}"\n',
            at(8, 10) + "{paths} is a list of files and must be the whole value",
            id="paths-twice",
        ),
        pytest.param(
            'watch: {path: in}\nparameters:\n  a: "{path!r}"\n',
            at(7, 10) + "template '{path!r}': format specs and conversions are not supported",
            id="conversion",
        ),
        pytest.param(
            'watch: {path: in}\nparameters:\n  a: "x{path:>10}"\n',
            at(7, 10) + "template 'x{path:>10}': format specs and conversions are not supported",
            id="format-spec",
        ),
        pytest.param(
            'watch: {path: in}\nparameters:\n  nested:\n    deep: [1, "ok", "{nope}"]\n',
            at(8, 25) + "unknown template {nope} in '{nope}'",
            id="nested-list",
        ),
        pytest.param(
            'watch: {path: in}\nparameters:\n  a: "{"\n',
            at(7, 10) + "bad template '{': Single '{' encountered",
            id="unbalanced-brace",
        ),
        pytest.param(
            'watch: {path: in}\nsteps:\n  load: {parameters: {source: "{path}"}}\n',
            at(7, 35) + "templates are filled in `parameters` only",
            id="template-in-steps",
        ),
        pytest.param(
            "watch:\n  path: in\n  settel: 2s\n",
            at(7, 7) + "unknown key 'settel'",
            id="unknown-key",
        ),
        pytest.param(
            "watch: {path: in, settle: 3s, ready_marker: _SUCCESS}\n",
            at(5, 49) + "use either settle or ready_marker, not both",
            id="settle-and-marker",
        ),
        pytest.param(
            'watch: {path: in, patterns: ["sub/*.csv"]}\n',
            at(5, 34)
            + "watch.patterns.0: 'sub/*.csv': patterns match file names, so they cannot be empty or contain '/'",
            id="slash-in-pattern",
        ),
        pytest.param(
            'watch: {path: in, ignore: ["ok", ""]}\n',
            at(5, 38) + "watch.ignore.1: '': patterns match file names",
            id="empty-ignore-pattern",
        ),
        pytest.param(
            "watch:\n  path: in\n  patterns: []\n",
            at(7, 17) + "watch.patterns: patterns must list at least one pattern, e.g. ['*.csv']",
            id="empty-patterns",
        ),
        pytest.param(
            "watch:\n  path: in\n  settle: soon\n",
            at(7, 15) + "watch.settle: expected a duration such as 30s",
            id="bad-settle",
        ),
        pytest.param(
            "watch:\n  path: in\n  batch_window: 1w\n",
            at(7, 21) + "watch.batch_window: expected a duration such as 30s",
            id="bad-window",
        ),
        pytest.param(
            "watch:\n  path: in\n  max_batch: 0\n",
            at(7, 18) + "watch.max_batch: Input should be greater than or equal to 1",
            id="max-batch-zero",
        ),
        pytest.param(
            "watch:\n  path: in\n  scan_interval: 0s\n",
            at(7, 22) + "watch.scan_interval: scan_interval must be at least 100ms",
            id="scan-interval-too-short",
        ),
        pytest.param(
            "watch:\n  path: in\n  ready_marker: done/_SUCCESS\n",
            at(7, 21) + "watch.ready_marker: ready_marker must be a plain file name",
            id="marker-with-slash",
        ),
        pytest.param(
            "watch:\n  path: in\n  batch: per_dir\n",
            at(7, 14) + "watch.batch: Input should be 'per_file' or 'per_batch'",
            id="bad-batch",
        ),
        pytest.param(
            "watch: {path: '  '}\n",
            at(5, 19) + "watch.path: path must name a folder",
            id="blank-path",
        ),
        pytest.param(
            "watch: {patterns: ['*.csv']}\n",
            at(3, 3) + "job 'w' is missing required field 'watch.path'",
            id="missing-path",
        ),
        pytest.param(
            'cron: "0 * * * *"\nwatch: {path: in}\n',
            at(3, 3) + "job 'w' needs exactly one trigger of cron, every, at, watch, after (found: cron, watch)",
            id="watch-and-cron",
        ),
    ],
)
def test_watch_errors_are_positioned(body: str, expected: str) -> None:
    found = errors(job(body))
    assert any(problem.startswith(expected) for problem in found), found


def test_an_embedded_paths_in_per_file_reports_both_problems() -> None:
    found = errors(job('watch: {path: in}\nparameters: {a: "in/{paths}"}\n'))
    assert found == [
        at(6, 21) + "unknown template {paths} in 'in/{paths}'; per_file allows {path}, {name}, {stem}",
        at(6, 21) + "{paths} is a list of files and must be the whole value: input_paths: '{paths}'",
    ]


def test_a_bad_template_in_defaults_points_at_the_default() -> None:
    text = """\
version: 1
defaults:
  parameters: {out: "{bogus}"}
jobs:
  w: {pipeline: x.y:z, watch: {path: in}}
"""
    assert errors(text) == [at(3, 21) + f"unknown template {{bogus}} in '{{bogus}}'; {PER_FILE_ALLOWED}"]


def test_every_watch_problem_in_the_file_is_reported() -> None:
    text = """\
version: 1
jobs:
  a:
    pipeline: x.y:z
    watch: {path: in, settel: 2s}
  b:
    pipeline: x.y:z
    watch: {path: in}
    parameters: {x: "{bogus}"}
  c:
    pipeline: x.y:z
    watch: {path: in, batch: per_batch}
    parameters: {x: "{path}"}
  ok:
    pipeline: x.y:z
    watch: {path: in}
"""
    found = errors(text)
    assert [problem.split(": ", 1)[0] for problem in found] == [f"{FILE}:5:23", f"{FILE}:9:21", f"{FILE}:13:21"]


# ---- the spec's durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "settle", "window", "scan"),
    [
        ({}, 2.0, 0.0, 60.0),
        ({"settle": "5s"}, 5.0, 0.0, 60.0),
        ({"settle": "0s"}, 0.0, 0.0, 60.0),
        ({"ready_marker": "_SUCCESS"}, 0.0, 0.0, 60.0),
        ({"batch_window": "1m"}, 2.0, 0.0, 60.0),  # per_file has no window
        ({"batch": "per_batch"}, 2.0, 10.0, 60.0),
        ({"batch": "per_batch", "batch_window": "1m30s"}, 2.0, 90.0, 60.0),
        ({"poll": True}, 2.0, 0.0, 1.0),
        ({"scan_interval": "5m"}, 2.0, 0.0, 300.0),
        ({"poll": True, "scan_interval": "3s"}, 2.0, 0.0, 3.0),
    ],
)
def test_spec_seconds(fields: dict[str, Any], settle: float, window: float, scan: float) -> None:
    spec = WatchSpec(path="in", **fields)
    assert (spec.settle_seconds, spec.window_seconds, spec.scan_seconds) == (settle, window, scan)


@pytest.mark.parametrize("marker", ["", ".", "..", "a/b"])
def test_ready_marker_must_be_a_plain_name(marker: str) -> None:
    with pytest.raises(ValidationError, match="ready_marker must be a plain file name"):
        WatchSpec(path="in", ready_marker=marker)


# ---- templates ------------------------------------------------------------------------------

FILE_VALUES = {"path": "/in/a.tar.gz", "name": "a.tar.gz", "stem": "a.tar"}
BATCH_VALUES = {"paths": ["/in/a", "/in/b"]}


@pytest.mark.parametrize(
    ("parameters", "values", "rendered"),
    [
        ({"inputs": "{paths}"}, BATCH_VALUES, {"inputs": ["/in/a", "/in/b"]}),
        (
            {"cfg": {"inputs": "{paths}", "list": ["{paths}", "x"]}},
            BATCH_VALUES,
            {"cfg": {"inputs": ["/in/a", "/in/b"], "list": [["/in/a", "/in/b"], "x"]}},
        ),
        (
            {"src": "{path}", "out": "out/{stem}.json", "meta": {"tags": ["{name}", "raw"]}},
            FILE_VALUES,
            {"src": "/in/a.tar.gz", "out": "out/a.tar.json", "meta": {"tags": ["a.tar.gz", "raw"]}},
        ),
        (
            {"lit": "{{x}}", "mixed": "{{{stem}}}", "close": "a}}b"},
            FILE_VALUES,
            {"lit": "{x}", "mixed": "{a.tar}", "close": "a}b"},
        ),
        (
            {"n": 3, "f": 2.5, "b": True, "none": None, "deep": [1, {"flag": False}], "plain": "no braces"},
            FILE_VALUES,
            {"n": 3, "f": 2.5, "b": True, "none": None, "deep": [1, {"flag": False}], "plain": "no braces"},
        ),
        ({}, FILE_VALUES, {}),
    ],
    ids=["paths-list", "nested", "per-file", "literal-braces", "non-strings", "empty"],
)
def test_render_parameters(parameters: dict[str, Any], values: dict[str, Any], rendered: dict[str, Any]) -> None:
    assert render_parameters(parameters, values) == rendered


def test_render_parameters_gives_each_use_its_own_list_and_leaves_the_input_alone() -> None:
    parameters = {"a": "{paths}", "b": "{paths}", "keep": {"x": "{paths}"}}
    values = {"paths": ["/in/a"]}
    out = render_parameters(parameters, values)
    out["a"].append("/in/extra")
    assert out["b"] == ["/in/a"]
    assert values == {"paths": ["/in/a"]}
    assert parameters == {"a": "{paths}", "b": "{paths}", "keep": {"x": "{paths}"}}


@pytest.mark.parametrize(
    ("parameters", "keys"),
    [
        ({"a": "{path}", "b": "plain", "c": 5}, ["a"]),
        ({"z": {"d": ["x", "{stem}"]}, "a": "{{literal}}", "m": "{paths}"}, ["m", "z"]),
        ({"bad": "{", "lit": "}}", "n": None}, []),
        ({}, []),
    ],
)
def test_templated_keys(parameters: dict[str, Any], keys: list[str]) -> None:
    assert templated_keys(parameters) == keys


def test_template_problems_name_the_path_under_parameters() -> None:
    found = template_problems({"a": {"b": ["ok {stem}", "{bogus}"]}, "c": "{paths}"}, "per_file")
    assert [key for key, _ in found] == [("a", "b", 1), ("c",)]
    assert template_problems({"a": {"b": ["{path}", "{{x}}"]}, "n": 1}, "per_file") == []
    assert template_problems({"all": "{paths}"}, "per_batch") == []
