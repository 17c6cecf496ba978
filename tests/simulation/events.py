"""Histories for the simulation: what happens in the world, in order, generated from a seed.

An event is a plain tuple, so a failing history prints as something one can read and paste
back (`scripts/simulate --seed S` prints the shortest one that still fails)."""

from __future__ import annotations

import random

Event = tuple  # ("advance", seconds) | ("cli-trigger", job, nonce) | ...

JOBS = ("every-min", "queued", "swap", "fanout", "limited", "timed")
WATCH_JOB = "files"
RELOADS = ("params", "add-extra", "remove-extra", "invalid", "check-timeout", "check-crash", "base")


def generate(seed: int, length: int) -> list[Event]:
    """A history of `length` events: mostly time passing, with everything that can happen to a
    daemon mixed in (requests, pauses, reloads, files, database faults, crashes, stalls)."""
    rng = random.Random(seed)
    events: list[Event] = []
    api_keys: list[str] = []
    for index in range(length):
        roll = rng.random()
        if roll < 0.40:
            events.append(("advance", rng.choice((1, 2, 5, 10, 20, 30, 45, 60, 90))))
        elif roll < 0.45:
            events.append(("cli-trigger", rng.choice(JOBS), f"n{index}"))
        elif roll < 0.47:  # several requests for one job, taken by the daemon in one batch
            events.append(("cli-burst", rng.choice(("swap", "queued", "every-min")), f"n{index}", rng.randrange(2, 4)))
        elif roll < 0.54:
            if api_keys and rng.random() < 0.4:
                key = rng.choice(api_keys)  # a client retrying with the same Idempotency-Key
            else:
                key = f"k{index}" if rng.random() < 0.7 else None
                if key:
                    api_keys.append(key)
            # recorded by the API's thread just before one of the daemon's next write transactions
            job = "swap" if rng.random() < 0.3 else rng.choice(JOBS)  # replace races with the launcher
            first = rng.randrange(4)
            events.append(("api-trigger", job, key, f"n{index}", first))
            if rng.random() < 0.3:  # a burst: another trigger lands while the daemon handles the first
                events.append(("api-trigger", job, None, f"n{index}b", first + rng.choice((1, 2))))
        elif roll < 0.58:
            events.append(("pause", rng.choice((*JOBS, WATCH_JOB))))
        elif roll < 0.63:
            events.append(("resume", rng.choice((*JOBS, WATCH_JOB))))
        elif roll < 0.65:
            events.append(("clear-errors", rng.choice(JOBS)))
        elif roll < 0.70:
            events.append(("reload", rng.choice(RELOADS)))
        elif roll < 0.76:
            events.append(("file", f"f{index}.csv"))
        elif roll < 0.84:
            # the daemon's k-th next write transaction fails (before it starts, or after it committed)
            events.append(("fault", rng.choice(("before", "before", "after")), rng.randrange(4)))
        elif roll < 0.88:
            events.append(("crash",))
        elif roll < 0.90:
            events.append(("crash-mid-step",))
        elif roll < 0.92:
            events.append(("stall", rng.choice((20, 40, 90))))
        elif roll < 0.93:  # frozen in the middle of a step (a GC pause, SIGSTOP), before a write
            events.append(("stall-mid-step", rng.randrange(6), rng.choice((20, 40))))
        elif roll < 0.96:
            events.append(("stop",))
        elif roll < 0.97:
            events.append(("start",))  # refused while a daemon holds the lease
        else:
            events.append(("advance", 5))
    return events


def shrink(events: list[Event], fails: callable[[list[Event]], bool]) -> list[Event]:  # type: ignore[valid-type]
    """The shortest sub-history found that still fails (delta debugging: drop chunks, then events)."""
    current = list(events)
    chunk = max(1, len(current) // 2)
    while chunk >= 1:
        start, shrunk = 0, False
        while start < len(current):
            candidate = current[:start] + current[start + chunk :]
            if candidate and fails(candidate):
                current, shrunk = candidate, True
            else:
                start += chunk
        if not shrunk:
            chunk //= 2
    return current
