"""Pure diffing of desired vs stored job specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.config.loader import parse_config
from scheduler.policy.reload_diff import diff_jobs, emptying_problem, trigger_changed
from scheduler.timing.durations import format_duration, parse_duration


def spec(**fields: object) -> dict[str, object]:
    return {"pipeline": "a.b:c", "cron": None, "every": "1m", "timezone": "UTC", "parameters": {}, **fields}


@pytest.mark.parametrize(
    ("jobs", "refused"),
    [("jobs:\n", True), ("jobs: ~\n", True), ("jobs:\n  # a: {pipeline: a.b:c, every: 1m}\n", True),
     ("jobs: {}\n", False), ("jobs:\n  a: {pipeline: a.b:c, every: 1m}\n", False)],
)  # fmt: skip
def test_a_file_without_jobs_may_not_remove_every_active_job_unless_it_says_so(jobs: str, refused: bool) -> None:
    config = parse_config("version: 1\n" + jobs, Path("/srv/schedules.yaml"), "rev")
    active = ["a", "b", "c", "d", "e", "f", "g"]
    problem = emptying_problem(config, active, allow_empty=False)
    assert (problem is not None) is refused
    if problem is not None:
        assert (problem.line, problem.column) == (2, 1)  # at the jobs key
        assert "would remove all 7 active job(s) (a, b, c, d, e and 2 more)" in problem.message
        assert "`jobs: {}`" in problem.message and "--allow-empty" in problem.message
    assert emptying_problem(config, active, allow_empty=True) is None
    assert emptying_problem(config, [], allow_empty=False) is None  # nothing to remove: a first start


def test_diff_classifies_every_job() -> None:
    diff = diff_jobs(
        {"same": spec(), "new": spec(), "params": spec(parameters={"x": 2}), "moved": spec(every="5m")},
        {"same": spec(), "gone": spec(), "params": spec(parameters={"x": 1}), "moved": spec()},
    )
    assert diff.added == ["new"]
    assert diff.removed == ["gone"]
    assert diff.unchanged == ["same"]
    changes = {c.name: c for c in diff.changed}
    assert changes["params"].fields == {"parameters": ({"x": 1}, {"x": 2})}
    assert not trigger_changed(changes["params"])
    assert changes["moved"].fields == {"every": ("1m", "5m")}
    assert trigger_changed(changes["moved"])
    assert not diff.empty


def test_identical_configs_give_an_empty_diff() -> None:
    diff = diff_jobs({"a": spec()}, {"a": spec()})
    assert diff.empty and diff.unchanged == ["a"]


def test_a_field_that_appears_counts_as_a_change() -> None:
    old = spec()
    old.pop("parameters")
    change = diff_jobs({"a": spec(parameters={"k": 1})}, {"a": old}).changed[0]
    assert change.fields == {"parameters": (None, {"k": 1})}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        (" 10M ", 600),
        (5, 5.0),
        (2.5, 2.5),
        ("500ms", 0.5),
        ("1s250ms", 1.25),
        ("0ms", 0.0),
    ],
)
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5", "1w", "-1s", "m5", "1.5h", "5mss", "ms", True, -3])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (90, "1m30s"), (86400, "1d"), (93784, "1d2h3m4s"), (0.25, "250ms"), (61.5, "1m1s500ms")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
