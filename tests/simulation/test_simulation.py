"""The daemon's loop, stepped in process under simulated time, runs and faults (see harness.py).

CI runs a fixed set of seeds on SQLite and a few on PostgreSQL; `scripts/simulate --seeds N`
runs as many as you like. REGRESSIONS holds the shortest failing histories the simulation has
found, kept once their defect was fixed; OLD_DEFECTS puts fixed defects back one at a time and
checks that the simulation still catches each of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.simulation.__main__ import invariant_of
from tests.simulation.events import Event, generate
from tests.simulation.harness import run
from tests.simulation.old_defects import OLD_DEFECTS

CI_SEEDS = range(1, 7)
LENGTH = 150


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_every_invariant_holds(seed: int, tmp_path: Path) -> None:
    violations = run(generate(seed, LENGTH), f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    assert not violations, f"seed {seed}: scripts/simulate --seed {seed} prints its shortest history\n" + "\n".join(
        violations
    )


@pytest.mark.parametrize("seed", (101, 102))
def test_every_invariant_holds_on_postgresql(seed: int, db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the SQLite seeds run above")
    violations = run(generate(seed, LENGTH), db_url, tmp_path)
    assert not violations, "\n".join(violations)


# Shortest histories that once failed, by what was wrong (each fixed, each kept), with the
# defect to put back to see it fail again.
REGRESSIONS: dict[str, tuple[list[Event], str]] = {
    "a paused job's slots that came due while no daemon ran were on no record": (
        [
            ("advance", 55),
            ("pause", "every-min"),
            ("crash",),  # at 00:00:57; the supervisor restarts it at 00:01:02, after the 00:01:00 slot
            ("advance", 700),
        ],
        "a paused job's slots that came due while no daemon ran were on no record",
    ),
    "a run whose claim committed while the database reported a failure stayed running, unstarted": (
        [
            ("advance", 20),
            ("fault", "after", 2),  # the launcher's claim commits, and its connection drops
            ("cli-trigger", "queued", "a"),
            ("advance", 10),
            ("advance", 30),
        ],
        "a claim whose commit the daemon did not hear of left its run running for ever",
    ),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_a_history_that_once_failed_passes(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    history, defect = REGRESSIONS[name]
    assert run(history, f"sqlite:///{tmp_path / 'now.db'}", tmp_path / "now") == []
    undo, invariant = OLD_DEFECTS[defect]
    undo(monkeypatch)
    found = run(history, f"sqlite:///{tmp_path / 'old.db'}", tmp_path / "old")
    assert invariant in map(invariant_of, found), found


# The seed and history length with which the simulation catches each old defect (found with
# scripts/simulate on the defect put back; the claim race needs a long history to come up).
CATCHES: dict[str, tuple[int, int]] = {
    "a claimed run was not checked to be still queued (3)": (50, 300),
    "replaced queued runs ended without an audit event (5)": (1, LENGTH),
    "a failing pipeline check left the daemon reloading (6)": (1, LENGTH),
    "a job at max_runs kept a next fire (7)": (1, LENGTH),
    "a paused job's slots that came due while no daemon ran were on no record": (3, LENGTH),
    "a claim whose commit the daemon did not hear of left its run running for ever": (42, LENGTH),
    "a stalled daemon wrote after losing its lease, and outcomes were recorded twice (9)": (1, LENGTH),
    "an upstream run's end was not kept for its after: job": (1, LENGTH),
}


@pytest.mark.parametrize("defect", list(CATCHES), ids=str)
def test_the_simulation_catches_the_old_defect(defect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    undo, invariant = OLD_DEFECTS[defect]
    undo(monkeypatch)
    seed, length = CATCHES[defect]
    violations = run(generate(seed, length), f"sqlite:///{tmp_path / 'state.db'}", tmp_path)
    assert invariant in map(invariant_of, violations), violations
