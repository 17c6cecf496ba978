"""Exit codes: one table, one meaning each, for every command (the README's table is this one).

Library code raises `scheduler.errors` exceptions and never exits; `scheduler.cli.main` maps
them to these codes, and commands that end on a verdict (a run that failed, a broken audit
trail, pending changes) exit with one of them directly.
"""

from __future__ import annotations

from scheduler.errors import (
    ConfigError,
    DaemonNotRunningError,
    NotFoundError,
    SchedulerError,
    SettingsError,
    StateError,
)

OK = 0
FAILURE = 1  # a run that did not succeed (`trigger --wait`), an audit trail that does not verify, a failing check
INVALID = 2  # schedules.yaml, a setting or a command-line argument is invalid (click's usage errors are 2 too)
DAEMON_STATE = 3  # another daemon holds the state database, no daemon runs, or the state database is unusable
NOT_FOUND = 4  # a job, run or API key named on the command line does not exist
CHANGES_PENDING = 5  # `plan --detailed-exitcode`: the file would change what the daemon runs

MEANINGS = {
    OK: "success",
    FAILURE: "failure: a run did not succeed, the audit trail does not verify, or a check failed",
    INVALID: "invalid input: schedules.yaml, a setting or a command-line argument",
    DAEMON_STATE: "daemon state: another daemon holds the state database, none is running, or it is unusable",
    NOT_FOUND: "not found: the job, run or API key named does not exist",
    CHANGES_PENDING: "plan --detailed-exitcode: applying the file would change something",
}

_BY_ERROR: list[tuple[type[SchedulerError], int]] = [
    (ConfigError, INVALID),
    (SettingsError, INVALID),
    (StateError, DAEMON_STATE),
    (DaemonNotRunningError, DAEMON_STATE),
    (NotFoundError, NOT_FOUND),
]


def exit_code_of(error: SchedulerError) -> int:
    """The code a command exits with when `error` ends it."""
    for kind, code in _BY_ERROR:
        if isinstance(error, kind):
            return code
    return FAILURE
