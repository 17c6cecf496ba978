"""`scripts/simulate`: run the daemon through seeded histories and check every invariant.

    scripts/simulate --seeds 200            seeds 1..200; exit 1 at the first that fails
    scripts/simulate --seed 17              one seed; a failure prints its shortest failing history
    scripts/simulate --seed 17 --length 400 --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test

Exit 0 when every invariant held for every seed; 1 naming the failing seed, the violation and
the shortest event list that still fails (paste it into tests/simulation/test_simulation.py's
REGRESSIONS to keep it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.simulation.events import Event, generate, shrink
from tests.simulation.harness import run


def run_once(events: list[Event], db_url: str | None = None) -> list[str]:
    """One history on a fresh database (SQLite in a temporary folder, or a fresh PostgreSQL schema)."""
    with tempfile.TemporaryDirectory(prefix="zenml-scheduler-sim-") as tmp:
        if db_url is None:
            return run(events, f"sqlite:///{tmp}/state.db", Path(tmp))
        from sqlalchemy import create_engine, text

        schema = f"sim_{uuid.uuid4().hex[:12]}"
        admin = create_engine(db_url)
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        try:
            return run(events, f"{db_url}?options=-csearch_path%3D{schema}", Path(tmp))
        finally:
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def invariant_of(violation: str) -> str:
    """The name of the invariant a violation breaks ("after event 3 (...): name: what")."""
    return violation.rsplit("): ", 1)[-1].split(":", 1)[0]


def report(seed: int, events: list[Event], violations: list[str], db_url: str | None) -> None:
    print(f"seed {seed} FAILED: {violations[0]}", flush=True)
    broken = invariant_of(violations[0])
    shortest = shrink(events, lambda candidate: broken in map(invariant_of, run_once(candidate, db_url)))
    print(f"shortest failing history ({len(shortest)} of {len(events)} events):")
    print("[\n" + "".join(f"    {event!r},\n" for event in shortest) + "]")
    print("its violations:", *run_once(shortest, db_url), sep="\n  ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/simulate", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=int, default=20, help="run seeds 1..N (default 20)")
    which.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--length", type=int, default=150, help="events per history (default 150)")
    parser.add_argument("--db-url", default=None, help="a PostgreSQL URL to run on instead of SQLite")
    parser.add_argument("--verbose", action="store_true", help="show the daemons' log")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL + 1, stream=sys.stderr)
    seeds = [args.seed] if args.seed is not None else range(1, args.seeds + 1)
    began = time.monotonic()
    for seed in seeds:
        events = generate(seed, args.length)
        violations = run_once(events, args.db_url)
        if violations:
            report(seed, events, violations, args.db_url)
            return 1
    print(f"{len(seeds)} seed(s) x {args.length} events: every invariant held ({time.monotonic() - began:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
