"""schedules.yaml loading: every problem reported, each at its exact file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.config.loader import load_config
from scheduler.errors import ConfigError
from scheduler.timing.cron_trigger import CronTrigger
from scheduler.timing.triggers import IntervalTrigger, OneOffTrigger


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


VALID = """\
version: 1
defaults:
  timezone: Europe/Berlin
jobs:
  nightly-retrain:
    pipeline: pipelines.training:training_pipeline
    cron: "0 2 * * *"
    parameters: {model_type: gradient_boosting, data_url: data/train.csv}
    steps:
      preprocess: {parameters: {test_size: 0.25}}
    enable_cache: false
    description: Retrain every night
  demo:
    pipeline: pipelines.training:training_pipeline
    every: 1m
    timezone: UTC
  one-off:
    pipeline: pipelines.training:training_pipeline
    at: 2026-12-24T18:00:00+01:00
"""


def test_valid_config_builds_each_trigger(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert list(config.jobs) == ["nightly-retrain", "demo", "one-off"]
    nightly = config.jobs["nightly-retrain"]
    assert isinstance(nightly.trigger, CronTrigger)
    assert nightly.spec.timezone == "Europe/Berlin"  # from defaults
    assert nightly.spec.steps["preprocess"].parameters == {"test_size": 0.25}
    assert nightly.spec.enable_cache is False
    assert isinstance(config.jobs["demo"].trigger, IntervalTrigger)
    assert config.jobs["demo"].trigger.seconds == 60
    assert config.jobs["demo"].spec.timezone == "UTC"  # job overrides default
    assert isinstance(config.jobs["one-off"].trigger, OneOffTrigger)
    assert config.project_root == tmp_path.resolve()
    assert len(config.revision) == 12


def test_revision_changes_with_content(tmp_path: Path) -> None:
    first = load_config(write(tmp_path, VALID)).revision
    second = load_config(write(tmp_path, VALID + "# comment\n")).revision
    assert first != second


def test_naive_at_is_read_in_the_job_timezone(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
version: 1
jobs:
  once:
    pipeline: a.b:c
    at: 2026-12-24T18:00:00
    timezone: Europe/Berlin
""",
        )
    )
    trigger = config.jobs["once"].trigger
    assert isinstance(trigger, OneOffTrigger)
    assert trigger.at.utcoffset().total_seconds() == 3600


def test_syntax_error_is_positioned(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\njobs:\n  a: [1, 2\n  b: 3\n")
    assert len(found) == 1
    assert found[0].startswith("4:")
    assert "invalid YAML" in found[0]


def test_every_problem_is_reported_with_its_position(tmp_path: Path) -> None:
    text = """\
version: 1
jobs:
  bad-cron:
    pipeline: pipelines.training:training_pipeline
    cron: "0 25 * * *"
  bad-zone:
    pipeline: pipelines.training:training_pipeline
    every: 1m
    timezone: Mars/Olympus
  unknown-field:
    pipeline: pipelines.training:training_pipeline
    every: 5m
    retry: 3
  two-triggers:
    pipeline: pipelines.training:training_pipeline
    every: 5m
    cron: "* * * * *"
  no-trigger:
    pipeline: pipelines.training:training_pipeline
  bad-ref:
    pipeline: pipelines/training.py
    every: 1h
  bad-every:
    pipeline: a.b:c
    every: soon
"""
    found = problems(tmp_path, text)
    assert "5:11: cron: cron field 2 (hour): 25 is out of range 0-23" in found[0]
    assert found[1].startswith("9:15: timezone: unknown IANA timezone 'Mars/Olympus'")
    assert found[2].startswith("13:5: unknown job field 'retry'")
    assert found[3].startswith(
        "14:3: job 'two-triggers' needs exactly one trigger of cron, every, at, watch, after (found: cron, every)"
    )
    assert found[4].startswith("18:3: job 'no-trigger' needs exactly one trigger")
    assert found[5].startswith("21:15: pipeline: expected 'package.module:attribute'")
    assert found[6].startswith("25:12: every: expected a duration such as 30s")
    assert len(found) == 7


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
jobs:
  a:
    pipeline: x.y:z
    every: 1m
  a:
    pipeline: x.y:z
    every: 2m
""",
    )
    assert found == ["6:3: duplicate key 'a' (first defined at line 3, column 3)"]


def test_duplicate_key_inside_a_job(tmp_path: Path) -> None:
    found = problems(tmp_path, "version: 1\njobs:\n  a:\n    pipeline: x.y:z\n    every: 1m\n    every: 2m\n")
    assert found == ["6:5: duplicate key 'every' (first defined at line 5, column 5)"]


def test_top_level_and_defaults_are_strict(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 2
defaults:
  timezon: UTC
jobs: {}
extra: true
""",
    )
    assert found[0].startswith("1:10: unsupported version 2")
    assert found[1].startswith("3:3: unknown job field 'timezon'")
    assert found[2].startswith("5:1: unknown key 'extra'")


def test_bad_default_value_is_reported_once_at_the_default(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
defaults:
  timezone: Nowhere/Land
jobs:
  a: {pipeline: x.y:z, every: 1m}
  b: {pipeline: x.y:z, every: 2m}
""",
    )
    assert len(found) == 1
    assert found[0].startswith("3:13: timezone: unknown IANA timezone")


def test_job_trigger_replaces_default_trigger(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
version: 1
defaults:
  every: 1h
jobs:
  inherits: {pipeline: x.y:z}
  overrides: {pipeline: x.y:z, cron: "0 1 * * *"}
""",
        )
    )
    assert config.jobs["inherits"].trigger_text == "every 1h"
    assert config.jobs["overrides"].trigger_text == "cron 0 1 * * *"


def test_invalid_job_names_and_shapes(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
jobs:
  "bad name@x": {pipeline: x.y:z, every: 1m}
  scalar-job: 5
  missing-pipeline: {every: 1m}
  wrong-type: {pipeline: x.y:z, every: 1m, enabled: maybe, steps: {s: {parameters: {a: 1}, cache: no}}}
""",
    )
    assert found[0].startswith("3:3: invalid job name 'bad name@x'")
    assert found[1].startswith("4:15: job 'scalar-job' must be a mapping")
    assert found[2].startswith("5:3: job 'missing-pipeline' is missing required field 'pipeline'")
    assert any(f.startswith("6:53: enabled: Input should be a valid boolean") for f in found)
    assert any(f.startswith("6:92: unknown key 'cache'") for f in found)


def test_never_firing_cron_is_rejected(tmp_path: Path) -> None:
    found = problems(tmp_path, 'version: 1\njobs:\n  feb30: {pipeline: x.y:z, cron: "0 0 30 2 *"}\n')
    assert len(found) == 1
    assert "never fires" in found[0]


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")
    assert problems(tmp_path, "") == ["1:1: the file must be a mapping with 'version' and 'jobs'"]


def test_policy_fields_are_validated_with_positions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
defaults:
  catchup: sometimes
jobs:
  a:
    pipeline: x.y:z
    every: 1m
    max_runs: 0
    concurrency: parallel
    timeout: -5s
    retries: {max: 2, backoff: soon, factor: 0.5}
    start: 2026-12-02T00:00:00Z
    end: 2026-12-01T00:00:00Z
  b:
    pipeline: x.y:z
    every: 1m
    jitter: 1w
    max_queued: -1
    pause_after_failures: 0
""",
    )
    assert found[0].startswith("3:12: catchup: Input should be 'none', 'latest' or 'all'")
    assert found[1].startswith("8:15: max_runs: Input should be greater than or equal to 1")
    assert found[2].startswith("9:18: concurrency: Input should be 'skip', 'queue', 'replace' or 'allow'")
    assert found[3].startswith("10:14: timeout: expected a duration")
    assert found[4].startswith("11:32: retries.backoff: expected a duration")
    assert found[5].startswith("11:46: retries.factor: Input should be greater than or equal to 1")
    assert found[6].startswith("17:13: jitter: expected a duration")
    assert found[7].startswith("18:17: max_queued: Input should be greater than or equal to 1")
    assert found[8].startswith("19:27: pause_after_failures: Input should be greater than or equal to 1")
    assert len(found) == 9


def test_end_before_start_is_rejected(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
jobs:
  a:
    pipeline: x.y:z
    every: 1m
    start: 2026-12-02T00:00:00Z
    end: 2026-12-01T00:00:00Z
""",
    )
    assert found == ["7:10: end 2026-12-01T00:00:00+00:00 is not after start 2026-12-02T00:00:00+00:00"]


def test_retry_delays_grow_and_cap(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """\
version: 1
jobs:
  a: {pipeline: x.y:z, every: 1m, retries: {max: 5, backoff: 30s, factor: 2, max_backoff: 2m}}
""",
        )
    )
    retries = config.jobs["a"].spec.retries
    assert retries is not None
    assert [retries.delay(n) for n in range(1, 6)] == [30, 60, 120, 120, 120]


def test_window_bounds_the_trigger(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    from scheduler.timing.triggers import fire_times

    config = load_config(
        write(
            tmp_path,
            """\
version: 1
jobs:
  a: {pipeline: x.y:z, every: 1h, start: 2026-12-01T10:00:00Z, end: 2026-12-01T12:00:00Z}
""",
        )
    )
    after = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert [t.hour for t in fire_times(config.jobs["a"].trigger, after, 10)] == [10, 11, 12]


def test_every_takes_whole_seconds_while_other_durations_take_milliseconds(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1500ms}\n  b: {pipeline: x.y:z, every: 500ms}\n",
    )
    assert found == ["3:31: every: every must be whole seconds", "4:31: every: every must be at least 1s"]
    config = load_config(write(tmp_path, "version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1s, timeout: 1s500ms}\n"))
    assert config.jobs["a"].timeout == 1.5
