"""The `zenml-scheduler` command line: the group and its entry point, the only place where
errors become exit codes (see `scheduler.cli.exit_codes`)."""

from __future__ import annotations

import sys

import click

from scheduler.cli import api_keys, exit_codes, jobs, plan, records, run, service, status
from scheduler.errors import ConfigError, SchedulerError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zenml-scheduler")
def cli() -> None:
    """Fire ZenML pipelines on time, on request, exactly once, on the record."""


for command in (
    run.validate, run.run, plan.plan, plan.reload, service.health, service.show_settings,
    jobs.list_jobs, jobs.next_fires, jobs.trigger, jobs.pause, jobs.resume,
    status.status, status.clear, records.history, records.audit_cmd, api_keys.api_key,
):  # fmt: skip
    cli.add_command(command)
cli.add_command(service.show_settings, "config")  # the command's first name; it prints the settings


def main() -> None:
    """Console entry point: SchedulerError becomes its message on stderr and its exit code."""
    try:
        cli.main(prog_name="zenml-scheduler")
    except SchedulerError as exc:
        click.echo(f"error: {exc}" if not isinstance(exc, ConfigError) else str(exc), err=True)
        sys.exit(exit_codes.exit_code_of(exc))
