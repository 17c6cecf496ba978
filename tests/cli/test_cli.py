"""The command line as a user runs it: exit codes, messages, JSON shapes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness import Project


@pytest.mark.slow
def test_validate_reports_schema_and_pipeline_errors_with_positions(project: Project) -> None:
    project.write_config(
        "version: 1\n"
        "jobs:\n"
        "  good:\n"
        "    pipeline: tinypipes.tiny:tiny_pipeline\n"
        "    every: 1m\n"
        "  typo-param:\n"
        "    pipeline: tinypipes.tiny:tiny_pipeline\n"
        "    every: 1m\n"
        "    parameters: {sleep_secs: 1}\n"
        "  wrong-type:\n"
        "    pipeline: tinypipes.tiny:tiny_pipeline\n"
        "    every: 1m\n"
        "    parameters: {sleep_s: soon}\n"
        "  no-module:\n"
        "    pipeline: tinypipes.nothing:pipe\n"
        "    every: 1m\n"
        "  collision:\n"
        "    pipeline: tinypipes.tiny:tiny_with_step_param\n"
        "    every: 1m\n"
        "    parameters: {value: 2}\n"
        "    steps:\n"
        "      make_value: {parameters: {value: 3}}\n"
        "      scalee: {parameters: {factor: 2}}\n"
    )
    result = project.cli("validate")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line.removeprefix(f"{project.root}/") for line in result.stderr.strip().splitlines()]
    assert lines[0].startswith("schedules.yaml:9:18: ") and "sleep_secs" in lines[0]
    assert lines[1].startswith("schedules.yaml:13:27: ") and "sleep_s" in lines[1]
    assert lines[2].startswith("schedules.yaml:15:15: ") and "tinypipes.nothing" in lines[2]
    assert lines[3].startswith("schedules.yaml:22:33: ") and "parameters.value" in lines[3]
    assert lines[4].startswith("schedules.yaml:23:7: ") and "scalee" in lines[4]
    assert len(lines) == 5


def test_validate_schema_only_and_ok(project: Project) -> None:
    project.write_config('version: 1\njobs:\n  a: {pipeline: tinypipes.tiny:tiny_pipeline, cron: "61 * * * *"}\n')
    bad = project.cli("validate", "--no-pipelines")
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"{project.config}:3:53: cron: cron field 1 (minute): 61 is out of range 0-59"
    project.write_config("version: 1\njobs:\n  a: {pipeline: tinypipes.tiny:tiny_pipeline, every: 1m}\n")
    ok = project.cli("validate", "--no-pipelines")
    assert ok.returncode == 0 and "OK (1 jobs" in ok.stdout


def test_next_json_and_text(project: Project) -> None:
    project.write_config(
        "version: 1\njobs:\n"
        '  nightly: {pipeline: a.b:c, cron: "30 2 * * *", timezone: Europe/Berlin}\n'
        "  once: {pipeline: a.b:c, at: 2026-12-24T18:00:00+01:00}\n"
    )
    result = project.cli("next", "nightly", "-n", "3", "--after", "2026-03-28T12:00:00Z", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "nightly": ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    }
    both = json.loads(project.cli("next", "-n", "2", "--after", "2026-12-25T00:00:00Z", "--json").stdout)
    assert both["once"] == [] and len(both["nightly"]) == 2
    text = project.cli("next", "once", "--after", "2026-12-01T00:00:00")
    assert "2026-12-24T18:00:00+01:00" in text.stdout
    unknown = project.cli("next", "nope")
    assert unknown.returncode == 4 and "nightly" in unknown.stderr
    bad_after = project.cli("next", "--after", "yesterday")
    assert bad_after.returncode == 2 and "ISO-8601" in bad_after.stderr


def test_invalid_config_exits_2_for_every_command(project: Project) -> None:
    project.write_config("version: 1\njobs:\n  a: {pipeline: a.b:c, every: 1m, every: 2m}\n")
    for command in (["list"], ["next"], ["run"], ["pause", "a"]):
        result = project.cli(*command)
        assert result.returncode == 2, command
        assert f"{project.config}:3:35: duplicate key 'every'" in result.stderr
    rejected = [e for e in json.loads(project.cli("audit", "--json").stdout) if e["event"] == "config-rejected"]
    assert len(rejected) == 1  # the daemon records why it refused to start
    assert "duplicate key 'every'" in rejected[0]["details"]["problems"][0]


def test_bad_setting_is_a_clear_error(project: Project) -> None:
    project.write_config("version: 1\njobs: {}\n")
    result = subprocess.run(
        [sys.executable, "-m", "scheduler", "list", "--config", str(project.config)],
        cwd=project.root,
        env={**project.env, "ZENML_SCHEDULER_MISFIRE_GRACE": "later"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "misfire_grace (ZENML_SCHEDULER_MISFIRE_GRACE)" in result.stderr


def test_history_and_audit_on_an_empty_database(project: Project) -> None:
    project.write_config("version: 1\njobs: {}\n")
    assert json.loads(project.cli("history", "--json").stdout) == []
    assert json.loads(project.cli("audit", "--json").stdout) == []
    verify = project.cli("audit", "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True


def test_a_bad_api_host_is_refused_for_what_it_is(project: Project) -> None:
    """Before, any bad host was refused "without API keys", as if it were merely not loopback."""
    project.write_config("version: 1\njobs: {}\n")
    cases = {
        ("--api-host", "not a host"): "'not a host' is not a valid host name or IP address",
        ("--api-host", "no-such-host.invalid"): "cannot serve the API on no-such-host.invalid: the host name does not",
    }
    for args, message in cases.items():
        result = project.cli("run", "--api", "--api-port", "0", "--no-check-pipelines", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "API key" not in result.stderr and "Traceback" not in result.stderr
    project.env["ZENML_SCHEDULER_API_HOST"] = "not a host"
    from_env = project.cli("run", "--no-check-pipelines")
    assert from_env.returncode == 2 and "api_host (ZENML_SCHEDULER_API_HOST): 'not a host' is not" in from_env.stderr
