"""A log line that could repeat without bound is written once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from scheduler.quiet_log import QuietLog, quiet


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_line_per_interval_and_the_count_of_those_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet_log = QuietLog(logging.getLogger("test.quiet"), every_s=60, monotonic=clock)
    with caplog.at_level(logging.WARNING, "test.quiet"):
        written = [quiet_log.warning("too many open files (%s)", n) for n in range(1000)]
        clock.now = 61
        quiet_log.warning("too many open files (%s)", "again")
    assert written.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "too many open files (0)",
        "too many open files (again) (999 more like this since the last one not logged)",
    ]


def test_the_filter_quiets_only_its_own_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.foreign")
    quiet(logger, ("socket.accept() out of system resource",), every_s=60)
    quiet(logger, ("socket.accept() out of system resource",), every_s=60)  # installed once
    assert len(logger.filters) == 1
    with caplog.at_level(logging.ERROR, "test.foreign"):
        for _ in range(500):
            logger.error("socket.accept() out of system resource")
            logger.error("something else")
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("something else") == 500
    assert sum(m.startswith("socket.accept()") for m in messages) == 1
