"""The exceptions zenml-scheduler raises, and nothing else.

    SchedulerError                 base; carries the exit code the CLI should use
    ├── ConfigError                schedules.yaml is invalid (every problem, with file:line:col)
    ├── SettingsError              process settings are invalid
    ├── StateError                 the state database cannot be used as asked
    │   ├── LeaseHeldError         another daemon holds this state database
    │   └── SchemaTooNewError      the database was written by a newer zenml-scheduler
    ├── NotFoundError              a job or run named by the user does not exist
    └── DaemonNotRunningError      a command needs a running daemon and there is none

Only `scheduler.cli.main` turns these into exit codes; library code never calls sys.exit.
"""

from __future__ import annotations

from dataclasses import dataclass


class SchedulerError(Exception):
    exit_code = 1


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

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class SettingsError(SchedulerError):
    exit_code = 2


class StateError(SchedulerError):
    exit_code = 1


class LeaseHeldError(StateError):
    exit_code = 3


class SchemaTooNewError(StateError):
    exit_code = 1


class NotFoundError(SchedulerError):
    exit_code = 4


class DaemonNotRunningError(SchedulerError):
    exit_code = 3
