"""A fuzz pass over schedules.yaml: random documents and random edits of a valid one. Whatever the
text, the loader gives a Config or a ConfigError, never another exception; and whatever it
accepts, the daemon can use: next fires, catch-up windows, jitter, retry delays and the state
database's job table take it without an OverflowError or a database error (configs that passed
`validate` used to crash-loop the daemon at every start)."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.config.job_spec import JobSpec
from scheduler.config.loader import parse_config
from scheduler.config.model import Config
from scheduler.errors import ConfigError
from scheduler.policy.catch_up import paused_while_down, plan_catch_up
from scheduler.policy.decide import policy_of, slot_jitter
from scheduler.store.catalog import apply_config
from scheduler.store.engine import Store, open_store

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,  # the same cases on every run: a CI failure reproduces locally
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PATH = Path("/fuzz/schedules.yaml")
VALID = """\
version: 1
defaults:
  timezone: Europe/Berlin
  retries: {max: 3, backoff: 10s}
jobs:
  nightly:
    pipeline: pipelines.training:training_pipeline
    cron: "0 2 * * *"
    parameters: {model_type: gradient_boosting, data_url: data/train.csv}
    misfire_grace: 1h
    catchup: all
    max_catchup: 5
  demo:
    pipeline: pipelines.training:training_pipeline
    every: 1m
    jitter: 5s
    max_runs: 10
  once:
    pipeline: pipelines.training:training_pipeline
    at: 2027-01-01T00:00:00+01:00
  after-nightly:
    pipeline: pipelines.training:training_pipeline
    after: {job: nightly, status: [succeeded, failed], when: "metadata.score > 0.5", debounce: 1m}
    parameters: {data_url: "{upstream.parameters.data_url}"}
"""

DURATION = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(-5, 10**20), st.sampled_from(["s", "m", "h", "d", "ms", "", "w", "y"])
)
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
    DURATION,
    st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
    st.sampled_from(["* * * * *", "0 0 31 2 *", "*/0 * * * *", "@yearly", "America", "UTC", "Etc/GMT+12"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(HOSTILE_TEXT, children, max_size=4),
    max_leaves=12,
)
TRIGGERS = st.sampled_from(["cron", "every", "at", "watch", "after"])
BIG_INTS = st.integers(min_value=-1, max_value=10**30) | st.sampled_from([1, 2, 50, 10**9, 10**9 + 1, 2**63])
INSTANTS = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.sampled_from([UTC, None])
).map(lambda d: d.isoformat())
PLAUSIBLE = {  # values of the right kind for each field, at and past their bounds
    "misfire_grace": DURATION, "jitter": DURATION, "timeout": DURATION,
    "max_catchup": BIG_INTS, "max_active": BIG_INTS, "max_queued": BIG_INTS, "max_runs": BIG_INTS,
    "pause_after_failures": BIG_INTS, "start": INSTANTS, "end": INSTANTS,
    "timezone": st.sampled_from(["UTC", "America", "Europe/Berlin", "Etc/GMT-14", "../../etc/passwd", ""]),
    "catchup": st.sampled_from(["none", "latest", "all"]),
    "concurrency": st.sampled_from(["skip", "queue", "replace", "allow"]),
    "retries": st.fixed_dictionaries(
        {"max": BIG_INTS},
        optional={"backoff": DURATION, "max_backoff": DURATION, "factor": st.floats(allow_nan=True)},
    ),
    "parameters": st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), VALUES, max_size=3),
}  # fmt: skip


def field_value(key: str) -> st.SearchStrategy[Any]:
    plausible = PLAUSIBLE.get(key)
    return plausible | VALUES if plausible is not None else VALUES


JOB_KEYS = sorted(JobSpec.model_fields)


@st.composite
def job_documents(draw: st.DrawFn) -> str:
    """A document whose jobs mix real trigger values with hostile values for random fields."""
    jobs: dict[str, Any] = {}
    for index in range(draw(st.integers(0, 3))):
        trigger = draw(TRIGGERS)
        job: dict[str, Any] = {"pipeline": "pipelines.training:training_pipeline"}
        job[trigger] = draw(st.sampled_from({
            "cron": ["*/5 * * * *", "0 0 29 2 *"], "every": ["1s", "1d", "100000000000d"],
            "at": ["2027-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00"], "watch": [{"path": "data/in"}],
            "after": [{"job": "job-0"}, {"job": "job-1", "when": "metadata.x > 0.2"}, {"pipeline": "p"}],
        }[trigger]) | VALUES)  # fmt: skip
        for key in draw(st.lists(st.sampled_from(JOB_KEYS), max_size=3, unique=True)):
            if key not in ("pipeline", "cron", "every", "at", "watch", "after"):
                job[key] = draw(field_value(key))
        jobs[draw(st.sampled_from([f"job-{index}"] * 4 + ["", "a" * 101, "x\x1b", "ok.name"]))] = job
    document: dict[str, Any] = {"version": draw(st.sampled_from([1, 1, 1, 1, 2, "1", None])), "jobs": jobs}
    if draw(st.booleans()):
        key = draw(st.sampled_from(sorted(PLAUSIBLE)))
        document["defaults"] = {key: draw(field_value(key))}
    return yaml.safe_dump(document, allow_unicode=True)


@st.composite
def one_field_changed(draw: st.DrawFn) -> str:
    """The valid file with one or two fields of one job set to values at or past their bounds:
    most of these load, so what the daemon does with accepted values is exercised."""
    document = yaml.safe_load(VALID)
    job = document["jobs"][draw(st.sampled_from(sorted(document["jobs"])))]
    for key in draw(st.lists(st.sampled_from(sorted(PLAUSIBLE)), min_size=1, max_size=2, unique=True)):
        job[key] = draw(PLAUSIBLE[key])
    return yaml.safe_dump(document, allow_unicode=True)


@st.composite
def edited_documents(draw: st.DrawFn) -> str:
    """The valid file with a few random characters inserted, removed or replaced."""
    text = VALID
    alphabet = string.printable + "&*!|>{}[]:,-#'\"\t\x00\x85\u2028\ufeff"
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.text(alphabet=alphabet, min_size=1, max_size=4))
        if action == "insert":
            text = text[:at] + piece + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + len(piece) :]
        else:
            text = text[:at] + piece + text[at + len(piece) :]
    return text


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return open_store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'state.db'}")


def load_and_use(text: str, store: Store) -> Config | None:
    try:
        config = parse_config(text, PATH, revision="fuzz")
    except ConfigError as refused:
        assert refused.problems and all(p.line >= 1 and p.column >= 1 for p in refused.problems)
        return None
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    for job in config.jobs.values():
        policy = policy_of(job, timedelta(minutes=10))
        job.first_fire_after(now)
        plan_catch_up(job, now - timedelta(days=3), now, policy)
        paused_while_down(job, now - timedelta(days=1), now)
        slot_jitter(f"{job.name}@x", job.jitter)
        if job.spec.retries is not None:
            for attempt in (1, 2, job.spec.retries.max):
                assert job.spec.retries.delay(attempt) >= 0
        assert job.spec_json and job.digest
    with store.write() as conn:
        apply_config(conn, config, now, "daemon")
    return config


@FUZZ
@given(text=job_documents())
def test_random_documents_load_or_are_refused_and_what_loads_can_run(text: str, store: Store) -> None:
    load_and_use(text, store)


@FUZZ
@given(text=one_field_changed())
def test_valid_files_with_values_at_their_bounds_load_or_are_refused(text: str, store: Store) -> None:
    load_and_use(text, store)


@FUZZ
@given(text=edited_documents())
def test_random_edits_of_a_valid_file_load_or_are_refused(text: str, store: Store) -> None:
    load_and_use(text, store)


def test_the_fuzz_reaches_both_outcomes(store: Store) -> None:
    """A generator whose every case is refused (or accepted) tests half of the promise."""
    assert load_and_use(VALID, store) is not None
    assert load_and_use(VALID.replace("every: 1m", "every: 1m\n    every: 2m"), store) is None
