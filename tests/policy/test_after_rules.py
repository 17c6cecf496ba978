"""The pure rules of after jobs: run keys, chains, matching an ended upstream run, debounce and
catch-up, each as a table with the time passed in."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from scheduler.config import after_spec
from scheduler.config.loader import parse_config
from scheduler.config.model import Job
from scheduler.policy import after_rules
from scheduler.policy.after_rules import (
    AFTER_CATCHUP_REASONS,
    Errored,
    Matched,
    NotMatched,
    chain_after,
    chain_problem,
    debounce_due,
    match,
    plan_catch_up,
)
from scheduler.policy.keys import MAX_KEY, after_run_key, debounced_run_key
from scheduler.store.catalog import CATCHUP_REASONS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
RUN_ID = "0b6a2c3e-0000-4000-8000-000000000001"


# ---- run keys -----------------------------------------------------------------------------------


def test_after_run_key() -> None:
    assert after_run_key("retrain", RUN_ID) == f"retrain@after:{RUN_ID}"
    assert after_run_key("retrain", "drift@2026-03-01T12:00:00Z#2") == "retrain@after:drift@2026-03-01T12:00:00Z#2"


def test_a_long_upstream_id_keeps_the_key_within_the_column_and_distinct() -> None:
    job = "j" * 100
    first, second = after_run_key(job, "x" * 500 + "a"), after_run_key(job, "x" * 500 + "b")
    assert len(first) <= MAX_KEY and len(second) <= MAX_KEY
    assert first != second and first.startswith(f"{job}@after:xxx")
    exact = "y" * (MAX_KEY - len(job) - len("@after:"))
    assert after_run_key(job, exact) == f"{job}@after:{exact}"  # at the width: kept whole


def test_debounced_run_key_depends_on_the_set_of_runs_only() -> None:
    key = debounced_run_key("retrain", ["b", "a", "c"])
    assert key == debounced_run_key("retrain", iter(["c", "a", "b"]))
    assert key != debounced_run_key("retrain", ["a", "b"])
    assert key.startswith("retrain@after:") and len(key.split(":", 1)[1]) == 16
    assert len(debounced_run_key("j" * 100, [RUN_ID] * 1000)) <= MAX_KEY


def test_the_loader_helpers_are_the_same_rules() -> None:
    assert after_rules.static_cycles is after_spec.static_cycles


# ---- chains -------------------------------------------------------------------------------------


def test_chain_after_appends_the_upstream_pipeline() -> None:
    assert chain_after((), "drift_pipeline") == ("drift_pipeline",)
    assert chain_after(["a", "b"], "c") == ("a", "b", "c")


@pytest.mark.parametrize(
    ("chain", "downstream", "max_depth", "code"),
    [
        ((), "p", 10, None),
        (("a",), "b", 10, None),
        (("a", "b"), "a", 10, "cycle"),
        (("a",), "a", 10, "cycle"),
        (tuple(f"p{i}" for i in range(10)), "x", 10, None),  # 10 upstream links: allowed
        (tuple(f"p{i}" for i in range(11)), "x", 10, "chain-depth"),  # the 11th: refused
        (("a",), "b", 0, "chain-depth"),
        ((), "b", 0, None),
        (tuple(f"p{i}" for i in range(11)), "p3", 10, "cycle"),  # a cycle is named first
    ],
)
def test_chain_problem(chain: tuple[str, ...], downstream: str, max_depth: int, code: str | None) -> None:
    found = chain_problem(chain, downstream, max_depth)
    assert (found[0] if found else None) == code


def test_chain_problem_reasons_name_the_chain() -> None:
    assert chain_problem(("drift", "train"), "drift", 10) == (
        "cycle",
        "pipeline drift would run again after its own run: drift -> train -> drift",
    )
    code, reason = chain_problem(("a", "b", "c"), "d", 2) or ("", "")
    assert code == "chain-depth"
    assert reason == "the run would be the end of a chain of 3 upstream runs, more than the 2 allowed: a -> b -> c -> d"


# ---- matching an ended upstream run ------------------------------------------------------------

CONFIG = """\
version: 1
jobs:
  drift-check:
    pipeline: pipelines.monitoring:drift_pipeline
    every: 30m
  retrain:
    pipeline: pipelines.training:training_pipeline
    after:
      job: drift-check
      when: "metadata.drift_score > 0.2"
    parameters:
      data_url: "{upstream.parameters.data_url}"
      model_type: gradient_boosting
      note: "after {upstream.zenml_run_name}"
      literal: "{{kept}}"
    steps:
      train: {parameters: {max_depth: 3, tag: "{upstream.run_key}"}}
      evaluate: {parameters: {threshold: 0.5}}
  on-failure:
    pipeline: pipelines.training:training_pipeline
    after: {job: drift-check, status: [failed, timed_out]}
  any-drift-run:
    pipeline: pipelines.training:training_pipeline
    after: {pipeline: drift_pipeline}
  stopped-drift-run:
    pipeline: pipelines.training:training_pipeline
    after: {pipeline: drift_pipeline, status: [stopped, failed]}
"""


@pytest.fixture(scope="module")
def jobs() -> dict[str, Job]:
    return parse_config(textwrap.dedent(CONFIG), Path("/p/schedules.yaml"), "rev").jobs


def upstream(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "status": "succeeded", "job": "drift-check", "pipeline": "drift_pipeline",
        "run_key": "drift-check@2026-03-01T11:30:00Z", "zenml_run_id": RUN_ID, "zenml_run_name": "drift-1",
        "parameters": {"data_url": "data/new.csv"}, "metadata": {"drift_score": 0.31}, "steps": {}, "artifacts": {},
        "duration_s": 12.0, "finished_at": "2026-03-01T11:30:12+00:00",
    }  # fmt: skip
    return {**base, **changes}


def test_a_matching_run_gives_only_the_filled_overrides(jobs: dict[str, Job]) -> None:
    assert match(jobs["retrain"], upstream()) == Matched(
        parameters={"data_url": "data/new.csv", "note": "after drift-1", "literal": "{kept}"},
        steps={"train": {"tag": "drift-check@2026-03-01T11:30:00Z"}},
        reads={"metadata.drift_score": 0.31},
    )


@pytest.mark.parametrize(
    ("job", "changes", "outcome", "text"),
    [
        ("retrain", {"metadata": {"drift_score": 0.1}}, NotMatched, "when is false: metadata.drift_score > 0.2"),
        ("retrain", {"status": "failed"}, NotMatched,
         "the upstream run ended failed; retrain runs after drift-check ends succeeded"),
        ("retrain", {"job": "other-job"}, NotMatched, "the run is of job 'other-job', not of 'drift-check'"),
        ("retrain", {"metadata": {}}, Errored, "after.when: metadata.drift_score: no key 'drift_score'"),
        ("retrain", {"metadata": {"drift_score": 1}}, Errored, "'>' cannot be applied to int and double"),
        ("retrain", {"parameters": {}}, Errored,
         "{upstream.parameters.data_url}: upstream.parameters has no 'data_url'"),
        ("retrain", {"zenml_run_name": None}, Errored, "{upstream.zenml_run_name} is null"),
        ("on-failure", {"status": "timed_out"}, Matched, ""),
        ("on-failure", {"status": "succeeded"}, NotMatched, "runs after drift-check ends failed, timed_out"),
        # a ZenML record of the job's pipeline run (no job of ours): ZenML's vocabulary, only success crosses
        ("on-failure", {"job": None, "status": "failed"}, NotMatched, "ended failed"),
        ("any-drift-run", {"job": None, "status": "completed"}, Matched, ""),
        ("any-drift-run", {"job": None, "status": "cached"}, Matched, ""),
        ("any-drift-run", {"job": None, "status": "failed"}, NotMatched,
         "the upstream run ended failed; any-drift-run runs after pipeline drift_pipeline ends succeeded"),
        ("any-drift-run", {"job": "drift-check", "status": "completed"}, Matched, ""),  # pipeline: speaks ZenML's
        ("stopped-drift-run", {"job": None, "status": "stopped"}, Matched, ""),
        ("stopped-drift-run", {"job": None, "status": "completed"}, NotMatched, "ends stopped, failed"),
    ],
)  # fmt: skip
def test_match(jobs: dict[str, Job], job: str, changes: dict[str, Any], outcome: type, text: str) -> None:
    found = match(jobs[job], upstream(**changes))
    assert type(found) is outcome, found
    if isinstance(found, NotMatched):
        assert text in found.reason
    elif isinstance(found, Errored):
        assert text in found.error


def test_a_condition_error_keeps_what_was_read(jobs: dict[str, Job]) -> None:
    assert match(jobs["retrain"], upstream(metadata={})) == Errored(
        "after.when: metadata.drift_score: no key 'drift_score' (test for it first with has(...))",
        {"metadata.drift_score": None},
    )


def test_a_job_without_templates_matches_with_no_overrides(jobs: dict[str, Job]) -> None:
    assert match(jobs["on-failure"], upstream(status="failed")) == Matched({}, {}, {})


def test_match_refuses_a_job_that_is_not_an_after_job(jobs: dict[str, Job]) -> None:
    with pytest.raises(ValueError, match="not an after job"):
        match(jobs["drift-check"], upstream())


# ---- debounce and catch-up ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ago", "debounce", "due"),
    [(0, 300, False), (299.9, 300, False), (300, 300, True), (301, 300, True), (0, 0, True), (5, 1, True)],
)
def test_debounce_due(ago: float, debounce: float, due: bool) -> None:
    assert debounce_due(NOW - timedelta(seconds=ago), debounce, NOW) is due


def test_debounce_due_wants_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        debounce_due(datetime(2026, 3, 1, 11, 0), 60, NOW)


def ago(*minutes: float) -> list[datetime]:
    return [NOW - timedelta(minutes=m) for m in minutes]


GRACE = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("finished", "catchup", "max_catchup", "plan"),
    [
        ([], "latest", 50, []),
        (ago(30, 20, 5, 3, 1), "latest", 50, ["missed", "missed", "coalesced", "coalesced", None]),
        (ago(30, 5, 3, 1), "none", 50, ["missed", "catchup-none", "catchup-none", "catchup-none"]),
        (ago(30, 5, 3, 1), "all", 50, ["missed", None, None, None]),
        (ago(30, 5, 3, 1), "all", 2, ["missed", "catchup-limit", None, None]),
        (ago(30, 20), "latest", 50, ["missed", "missed"]),  # nothing within grace: nothing runs
        (ago(10, 10.01), "latest", 50, [None, "missed"]),  # exactly the grace ago still counts
        (ago(1, 5, 3), "latest", 50, [None, "coalesced", "coalesced"]),  # out of order: the newest fires
        (ago(2, 2), "latest", 50, ["coalesced", None]),  # a tie: the later entry fires
    ],
)
def test_plan_catch_up(finished: list[datetime], catchup: str, max_catchup: int, plan: list[str | None]) -> None:
    assert plan_catch_up(finished, catchup, GRACE, max_catchup, NOW) == plan


def test_every_catch_up_code_has_a_reason_worded_like_the_slots_one() -> None:
    plans = [plan_catch_up(ago(30, 2, 1), catchup, GRACE, 1, NOW) for catchup in ("none", "latest", "all")]
    codes = {code for plan in plans for code in plan}
    assert codes - {None} == set(AFTER_CATCHUP_REASONS)
    for code, reason in CATCHUP_REASONS.items():
        assert AFTER_CATCHUP_REASONS[code].split(" runs ")[0] == reason.split(" runs ")[0]


def test_plan_catch_up_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError, match="unknown catchup"):
        plan_catch_up(ago(1), "some", GRACE, 1, NOW)
