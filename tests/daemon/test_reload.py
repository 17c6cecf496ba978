"""Hot reload against the daemon as a real subprocess (stand-in child interpreter), and `plan`."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.daemon.test_policies import start
from tests.harness import Project, wait_for

pytestmark = pytest.mark.slow

BASE = """\
version: 1
defaults: {{pipeline: fake.pipe:line}}
jobs:
  keep: {{every: 1d}}
  change: {{every: 1d}}
  drop: {{every: 1d}}
  tick: {{every: 1s, catchup: none}}
{extra}"""


def reloads(project: Project, source: str = "reload") -> list[dict]:
    rows = project.query("SELECT details FROM audit WHERE event='config-loaded' AND source=? ORDER BY id", source)
    return [json.loads(r["details"]) for r in rows]


def next_fire(project: Project, job: str) -> str:
    return project.query("SELECT next_fire_at FROM jobs WHERE name=?", job)[0]["next_fire_at"]


def test_a_valid_edit_applies_only_the_diff(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(BASE.format(extra=""))
    daemon = start(project, stand_in)
    assert project.cli("pause", "keep").returncode == 0
    before = next_fire(project, "keep")
    edited = BASE.format(extra="  added: {every: 2d}\n").replace("change: {every: 1d}", "change: {every: 2h}")
    project.write_config(edited.replace("  drop: {every: 1d}\n", ""))
    loaded = wait_for(lambda: reloads(project), 30, "the reload")[0]
    assert loaded["added"] == ["added"] and loaded["changed"] == ["change"] and loaded["removed"] == ["drop"]
    assert next_fire(project, "keep") == before  # untouched: same next fire time...
    status = json.loads(project.cli("status", "keep", "--json").stdout)
    assert status["paused"]  # ...and still paused
    changed = [json.loads(r["details"]) for r in project.query("SELECT details FROM audit WHERE event='job-changed'")]
    assert changed == [{"fields": {"every": {"old": "1d", "new": "2h"}}}]
    listed = {j["job"]: j for j in json.loads(project.cli("list", "--json").stdout)}
    assert set(listed) == {"keep", "change", "tick", "added"}
    assert project.query("SELECT removed_at FROM jobs WHERE name='drop'")[0]["removed_at"] is not None
    assert daemon.stop() == 0


def test_an_invalid_edit_is_rejected_and_the_old_config_keeps_firing(
    project: Project, stand_in: dict[str, str]
) -> None:
    project.write_config(BASE.format(extra=""))
    daemon = start(project, stand_in)
    project.write_config(BASE.format(extra="  broken: {every: 1d, cron: '* * * * *'}\n  bad: {every: soon}\n"))
    rejected = wait_for(
        lambda: project.query("SELECT details FROM audit WHERE event='config-rejected'"), 30, "rejection"
    )
    problems = json.loads(rejected[0]["details"])["problems"]
    assert any(":8:3: job 'broken' needs exactly one trigger" in p for p in problems)
    assert any(":9:16: every: expected a duration" in p for p in problems)
    assert "rejected" in daemon.log_path.read_text()
    mark = project.query("SELECT MAX(id) AS m FROM runs")[0]["m"] or 0
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE job='tick' AND id > ?", mark), 30, "tick to keep firing")
    assert reloads(project) == []
    assert daemon.stop() == 0


def test_a_burst_of_saves_gives_one_reload_and_rename_saves_are_seen(
    project: Project, stand_in: dict[str, str]
) -> None:
    project.write_config(BASE.format(extra=""))
    daemon = start(project, stand_in)
    for i in range(20):
        project.write_config(BASE.format(extra=f"  burst: {{every: {i + 1}h}}\n"))
        time.sleep(0.05)
    wait_for(lambda: reloads(project), 30, "the reload")
    time.sleep(2)
    assert 1 <= len(reloads(project)) <= 2
    assert json.loads(project.cli("list", "--json").stdout)[-1]["trigger"] == "every 20h"
    # an editor that writes a new file and renames it over the old one
    tmp = project.config.with_name(".schedules.yaml.swp")
    tmp.write_text(BASE.format(extra="  renamed: {every: 3h}\n"))
    os.replace(tmp, project.config)
    wait_for(lambda: any("renamed" in r["added"] for r in reloads(project)), 30, "the rename-style save")
    assert daemon.stop() == 0


def test_sighup_and_the_reload_command(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(BASE.format(extra=""))
    assert project.cli("reload").returncode == 3  # no daemon yet: said clearly
    daemon = start(project, stand_in)
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: len(reloads(project)) == 1, 30, "the SIGHUP reload")
    result = project.cli("reload")
    assert result.returncode == 0 and "reload requested" in result.stdout
    wait_for(lambda: len(reloads(project)) == 2, 30, "the requested reload")
    assert all(r["added"] == r["changed"] == r["removed"] == [] for r in reloads(project))
    assert daemon.stop() == 0


def test_plan_exit_codes_and_fields(project: Project, stand_in: dict[str, str]) -> None:
    project.write_config(BASE.format(extra=""))
    assert start(project, stand_in).stop() == 0
    same = project.cli("plan", "--no-pipelines", "--detailed-exitcode")
    assert same.returncode == 0 and "No changes." in same.stdout
    edited = project.root / "edited.yaml"
    edited.write_text(BASE.format(extra="  nightly: {cron: '30 2 * * *', timezone: Europe/Berlin}\n")
                      .replace("change: {every: 1d}", "change: {every: 12h}"))  # fmt: skip
    plan = project.cli("plan", str(edited), "--no-pipelines", "--json")
    assert plan.returncode == 0  # a valid file: changes are what a plan is for
    assert project.cli("plan", str(edited), "--no-pipelines", "--detailed-exitcode").returncode == 5
    data = json.loads(plan.stdout)
    assert data["added"] == ["nightly"] and data["removed"] == []
    assert data["changed"] == [{"job": "change", "fields": {"every": {"old": "1d", "new": "12h"}}}]
    assert len(data["next"]["nightly"]) == 3 and data["next"]["nightly"][0]["at"].endswith(":30:00+01:00")
    text = project.cli("plan", str(edited), "--no-pipelines")
    assert (
        "+ nightly" in text.stdout
        and "~ change" in text.stdout
        and "Plan: 1 to add, 1 to change, 0 to remove." in text.stdout
    )
    edited.write_text("version: 1\njobs:\n  x: {pipeline: a.b:c}\n")
    invalid = project.cli("plan", str(edited), "--no-pipelines")
    assert invalid.returncode == 2 and "needs exactly one trigger" in invalid.stderr


def test_a_hostile_file_saved_under_the_daemon_is_rejected_and_the_daemon_lives_on(
    project: Project, stand_in: dict[str, str]
) -> None:
    """A billion-laughs file (9 levels of 9 aliases) once drove the daemon to 2.5 GB and killed it."""
    project.write_config(BASE.format(extra=""))
    daemon = start(project, stand_in)
    laughs = "l0: &l0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
    )
    project.write_config(BASE.format(extra="") + laughs)
    rejected = wait_for(
        lambda: project.query("SELECT details FROM audit WHERE event='config-rejected'"), 30, "the rejection"
    )
    assert any("expands to more than" in p for p in json.loads(rejected[0]["details"])["problems"])
    status = (Path("/proc") / str(daemon.process.pid) / "status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
    assert rss_kb < 200_000, f"the daemon grew to {rss_kb} kB reading the bomb"
    project.write_config(BASE.format(extra="") + "nested: " + "[" * 990 + "]" * 990 + "\n")
    wait_for(
        lambda: len(project.query("SELECT 1 FROM audit WHERE event='config-rejected'")) == 2, 30, "the 2nd rejection"
    )
    mark = project.query("SELECT MAX(id) AS m FROM runs")[0]["m"] or 0
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE job='tick' AND id > ?", mark), 30, "tick to keep firing")
    metrics = project.cli("health", "--json")
    assert metrics.returncode == 0
    assert daemon.stop() == 0


EMPTY = "version: 1\njobs:\n"  # a save gone wrong: `jobs:` with nothing (null) under it
EMPTY_ON_PURPOSE = "version: 1\njobs: {}\n"


def rejections(project: Project) -> list[tuple[str, list[str]]]:
    rows = project.query("SELECT source, details FROM audit WHERE event='config-rejected' ORDER BY id")
    return [(r["source"], json.loads(r["details"])["problems"]) for r in rows]


def test_a_save_without_jobs_is_rejected_and_jobs_empty_on_purpose_is_applied(
    project: Project, stand_in: dict[str, str]
) -> None:
    project.write_config(BASE.format(extra=""))
    daemon = start(project, stand_in)
    project.write_config(EMPTY)
    wait_for(lambda: rejections(project), 30, "the rejection")
    [(source, [problem])] = rejections(project)
    assert source == "reload" and problem.startswith(f"{project.config}:2:1: the file has no jobs: applying it ")
    assert "remove all 4 active job(s) (change, drop, keep, tick)" in problem and "`jobs: {}`" in problem
    mark = project.query("SELECT MAX(id) AS m FROM runs")[0]["m"] or 0
    wait_for(lambda: project.query("SELECT 1 FROM runs WHERE job='tick' AND id > ?", mark), 30, "tick to keep firing")
    assert reloads(project) == [] and daemon.process.poll() is None
    # plan says so before anyone saves such a file
    plan = project.cli("plan", "--no-pipelines")
    assert plan.returncode == 0 and "Plan: 0 to add, 0 to change, 4 to remove." in plan.stdout
    assert f"{project.config}:2:1: warning: the file has no jobs" in plan.stderr
    assert "a running daemon rejects this file and keeps its jobs" in plan.stderr
    assert json.loads(project.cli("plan", "--no-pipelines", "--json").stdout)["warnings"] == [plan.stderr.strip()]
    project.env["ZENML_SCHEDULER_ALLOW_EMPTY"] = "true"
    allowed = project.cli("plan", "--no-pipelines")
    assert "warning: applying this file removes every job: all 4 active job(s)" in allowed.stderr
    del project.env["ZENML_SCHEDULER_ALLOW_EMPTY"]
    project.write_config(EMPTY_ON_PURPOSE)
    [loaded] = wait_for(lambda: reloads(project), 30, "the reload of jobs: {}")
    assert loaded["removed"] == ["change", "drop", "keep", "tick"] and len(rejections(project)) == 1
    after = project.cli("plan", "--no-pipelines")
    assert "No changes." in after.stdout and after.stderr == ""  # no job left to remove
    assert daemon.stop() == 0


def test_a_daemon_starts_on_a_file_without_jobs_over_active_jobs_only_with_allow_empty(
    project: Project, stand_in: dict[str, str]
) -> None:
    project.write_config(BASE.format(extra=""))
    assert start(project, stand_in).stop() == 0
    project.write_config(EMPTY)
    refused = project.start_daemon("--no-check-pipelines", env=stand_in)
    assert refused.process.wait(timeout=60) == 2, refused.output
    assert f"{project.config}:2:1: the file has no jobs" in refused.output and "Traceback" not in refused.output
    assert [source for source, _ in rejections(project)] == ["daemon"]
    assert len(project.query("SELECT 1 FROM jobs WHERE removed_at IS NULL")) == 4  # nothing was removed
    daemon = project.start_daemon("--no-check-pipelines", "--allow-empty", env=stand_in)
    loaded = wait_for(lambda: reloads(project, "daemon")[1:], 60, "the start on the empty file")
    assert loaded[0]["removed"] == ["change", "drop", "keep", "tick"]
    project.write_config(BASE.format(extra=""))
    wait_for(lambda: reloads(project), 30, "the jobs back")
    project.write_config(EMPTY)  # with --allow-empty a reload may empty the file too
    wait_for(lambda: len(reloads(project)) == 2, 30, "the reload of the empty file")
    assert reloads(project)[1]["removed"] == ["change", "drop", "keep", "tick"]
    assert len(rejections(project)) == 1 and daemon.process.poll() is None
    assert daemon.stop() == 0
