"""The exceptions zenml-scheduler raises, and nothing else.

    SchedulerError                 base
    ├── ConfigError                schedules.yaml is invalid (every problem, with file:line:col)
    ├── SettingsError              process settings are invalid
    ├── StateError                 the state database cannot be used as asked
    │   ├── LeaseHeldError         another daemon holds this state database
    │   ├── LeaseLostError         this daemon's lease was taken over while it ran
    │   └── SchemaTooNewError      the database was written by a newer zenml-scheduler
    ├── NotFoundError              a job or run named by the user does not exist
    └── DaemonNotRunningError      a command needs a running daemon and there is none

Only `scheduler.cli` turns these into exit codes (`scheduler.cli.exit_codes`); library code never exits.
"""

from __future__ import annotations

from dataclasses import dataclass


class SchedulerError(Exception):
    """Every error zenml-scheduler reports to its user."""


@dataclass(frozen=True)
class Problem:
    """One error in a file, positioned the way compilers do (1-based line and column)."""

    file: str
    line: int
    column: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.file}:{self.line}:{self.column}: {prefix}{self.message}"


class ConfigError(SchedulerError):
    """schedules.yaml was rejected; `problems` lists every error found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class SettingsError(SchedulerError):
    """Process settings (flags, ZENML_SCHEDULER_* variables, .env) are invalid."""


class StateError(SchedulerError):
    """The state database cannot be used as asked."""


class LeaseHeldError(StateError):
    """Another daemon holds this state database."""


class LeaseLostError(StateError):
    """This daemon's lease was taken over (it was stalled past lease_ttl): it must stop."""


class SchemaTooNewError(StateError):
    """The state database was written by a newer zenml-scheduler."""


class NotFoundError(SchedulerError):
    """A job, run or API key named by the user does not exist."""


class DaemonNotRunningError(SchedulerError):
    """A command needs a running daemon and there is none."""
