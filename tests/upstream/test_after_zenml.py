"""`after:` triggers on ZenML runs started outside the daemon: real ZenML runs in subprocesses,
the real follower child, the daemon as a subprocess (its own runs by the stand-in interpreter,
except where our own ZenML runs are the point)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from tests import zenml_env
from tests.harness import REPO, DaemonProcess, Project, wait_for

pytestmark = pytest.mark.slow

OUTSIDE = """\
import sys
from tinypipes.followed import followed_pipeline
for score in sys.argv[2:]:
    try:
        followed_pipeline(score=float(score), fail=sys.argv[1] == "fail")
    except RuntimeError:
        pass  # the failing run is on the record in ZenML; that is all we wanted
"""


def outside(project: Project, *scores: float, fail: bool = False) -> None:
    """Run the pipeline as a person would, with plain Python and no daemon involved."""
    script = project.root / "outside.py"
    script.write_text(OUTSIDE)
    env = {**project.env, "PYTHONPATH": f"{project.root}{os.pathsep}{project.env['PYTHONPATH']}"}
    args = [sys.executable, str(script), "fail" if fail else "ok", *map(str, scores)]
    done = subprocess.run(args, cwd=project.root, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]


def start(project: Project, env: dict[str, str], *args: str) -> DaemonProcess:
    daemon = project.start_daemon("--no-check-pipelines", *args, env=env)
    wait_for(lambda: follower_state(project).get("state") == "running" or daemon.process.poll() is not None,
             60, "the follower to start")  # fmt: skip
    assert daemon.process.poll() is None, daemon.output
    return daemon


def follower_state(project: Project) -> dict:
    found = project.query("SELECT value FROM meta WHERE key='follower_state'")
    return json.loads(found[0]["value"]) if found else {}


def rows(project: Project, job: str) -> list[dict]:
    return [dict(r) for r in project.query("SELECT * FROM runs WHERE job=? ORDER BY id", job)]


def events(project: Project, event: str, job: str | None = None) -> list[dict]:
    found = project.query("SELECT job, run_key, details FROM audit WHERE event=? ORDER BY id", event)
    return [{**dict(r), "details": json.loads(r["details"])} for r in found if job is None or r["job"] == job]


def zenml_runs(project: Project, since: datetime) -> list[dict]:
    """The followed pipeline's runs in ZenML created after `since` (the store is shared by the
    session's tests), read back by another process: id, status, output artifact."""
    script = (
        "import json\nfrom zenml.client import Client\n"
        f"runs = Client().list_pipeline_runs(pipeline_name='followed_pipeline', size=100, sort_by='asc:created',"
        f" created='gte:{since:%Y-%m-%d %H:%M:%S}')\n"
        "out = []\nfor r in runs.items:\n"
        "    outputs = r.steps['measure'].outputs if 'measure' in r.steps else {}\n"
        "    art = str(outputs['output'][0].id) if outputs.get('output') else None\n"
        "    out.append({'id': str(r.id), 'status': r.status.value, 'artifact': art})\n"
        "print(json.dumps(out))\n"
    )
    (project.root / "query.py").write_text(script)
    done = subprocess.run([sys.executable, "query.py"], cwd=project.root, env=project.env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


FOLLOWING = """\
version: 1
jobs:
  high-score:
    pipeline: fake.pipe:high
    after: {pipeline: followed_pipeline, when: "metadata.score > 0.3"}
    concurrency: queue
    parameters:
      mode: ok
      score: "{upstream.metadata.score}"
      model: "{upstream.artifacts.measure.output}"
      rows: "{upstream.steps.measure.metadata.rows}"
  failures:
    pipeline: fake.pipe:failures
    after: {pipeline: followed_pipeline, status: [failed]}
    parameters: {mode: ok, failed_run: "{upstream.zenml_run_id}"}
  quiet:
    pipeline: fake.pipe:quiet
    after: {pipeline: followed_pipeline, debounce: 5s}
    parameters: {mode: ok, score: "{upstream.metadata.score}"}
"""


def test_runs_started_outside_fire_their_downstream_once_on_their_metadata(
    project: Project, stand_in: dict[str, str]
) -> None:
    since = datetime.now(timezone.utc)
    project.write_config(FOLLOWING)
    daemon = start(project, stand_in)
    outside(project, 0.5, 0.1)
    outside(project, 0.7, fail=True)
    wait_for(lambda: rows(project, "failures") and len(events(project, "after-not-matched", "high-score")) >= 2,
             60, "the three upstream runs handled")  # fmt: skip

    # kill -9 of the follower: it is restarted, and a run that ends meanwhile fires once
    first = follower_state(project)["pid"]
    os.kill(first, signal.SIGKILL)
    outside(project, 0.9)
    wait_for(lambda: len(rows(project, "high-score")) == 2, 60, "the run that ended while the follower restarted")
    wait_for(lambda: len(rows(project, "quiet")) == 2, 30, "the second debounced run")
    time.sleep(1)
    health = json.loads(project.cli("health", "--json").stdout)
    assert health["follower"]["state"] == "running" and health["follower"]["pid"] != first
    assert daemon.stop() == 0

    ours = zenml_runs(project, since)
    assert [r["status"] for r in ours] == ["completed", "completed", "failed", "completed"]
    high = rows(project, "high-score")
    assert [r["run_key"] for r in high] == [f"high-score@after:{ours[0]['id']}", f"high-score@after:{ours[3]['id']}"]
    assert [r["upstream"] for r in high] == [ours[0]["id"], ours[3]["id"]]
    params = json.loads(high[0]["parameters_json"])["parameters"]
    assert params["score"] == 0.5 and params["rows"] == 3  # whole-value templates keep their type
    assert params["model"] == ours[0]["artifact"]  # the artifact version the upstream step produced
    not_matched = events(project, "after-not-matched", "high-score")
    assert {e["details"]["upstream"] for e in not_matched} == {ours[1]["id"], ours[2]["id"]}
    low = next(e for e in not_matched if e["details"]["upstream"] == ours[1]["id"])
    assert low["details"]["reads"] == {"metadata.score": 0.1}
    matched = events(project, "after-matched", "high-score")
    assert [e["details"]["reads"] for e in matched] == [{"metadata.score": 0.5}, {"metadata.score": 0.9}]
    failures = rows(project, "failures")
    assert [r["upstream"] for r in failures] == [ours[2]["id"]]
    assert json.loads(failures[0]["parameters_json"])["parameters"]["failed_run"] == ours[2]["id"]
    assert len(events(project, "follower-died")) == 1 and len(events(project, "follower-started")) == 2
    # debounce: the two runs that ended a second apart made one run, from the newest; the later one its own
    quiet = rows(project, "quiet")
    assert [json.loads(r["parameters_json"])["parameters"]["score"] for r in quiet] == [0.1, 0.9]
    coalesced = events(project, "after-coalesced", "quiet")
    assert [e["details"]["count"] for e in coalesced] == [2, 1]
    assert [r["upstream"] for r in quiet] == [ours[1]["id"], ours[3]["id"]]


CATCH_UP = """\
version: 1
jobs:
  latest:
    pipeline: fake.pipe:latest
    after: {pipeline: followed_pipeline}
    parameters: {mode: ok}
  every-one:
    pipeline: fake.pipe:every_one
    after: {pipeline: followed_pipeline}
    catchup: all
    concurrency: queue
    parameters: {mode: ok}
  none:
    pipeline: fake.pipe:none_of_them
    after: {pipeline: followed_pipeline}
    catchup: none
    parameters: {mode: ok}
  coalesced:
    pipeline: fake.pipe:coalesced
    after: {pipeline: followed_pipeline, debounce: 4s}
    catchup: all
    parameters: {mode: ok, score: "{upstream.metadata.score}"}
"""


def test_runs_that_end_while_the_daemon_is_down_follow_catchup_and_debounce(
    project: Project, stand_in: dict[str, str]
) -> None:
    since = datetime.now(timezone.utc)
    project.write_config(CATCH_UP)
    daemon = start(project, stand_in)
    daemon.kill9()  # its follower sees its stdin close and exits too
    outside(project, 0.2, 0.4)  # two runs while no daemon runs
    second = start(project, stand_in)
    wait_for(lambda: len(rows(project, "every-one")) == 2 and rows(project, "latest") and rows(project, "coalesced"),
             60, "the catch-up")  # fmt: skip
    assert second.stop() == 0
    third = start(project, stand_in)  # a restart fires nothing again
    time.sleep(3)
    assert third.stop() == 0

    ours = zenml_runs(project, since)
    assert len(ours) == 2
    assert [r["upstream"] for r in rows(project, "latest")] == [ours[1]["id"]]
    assert [r["upstream"] for r in rows(project, "every-one")] == [ours[0]["id"], ours[1]["id"]]
    assert rows(project, "none") == []
    skips = {(e["job"], e["details"]["code"]) for e in events(project, "skip")}
    assert {("latest", "coalesced"), ("none", "catchup-none")} <= skips
    coalesced = rows(project, "coalesced")
    assert len(coalesced) == 1 and json.loads(coalesced[0]["parameters_json"])["parameters"]["score"] == 0.4
    assert events(project, "after-coalesced", "coalesced")[0]["details"]["count"] == 2


CYCLE = """\
version: 1
jobs:
  b:
    pipeline: tinypipes.tiny:tiny_pipeline
    after: {pipeline: followed_pipeline}
    enable_cache: false
  a:
    pipeline: tinypipes.followed:followed_pipeline
    after: {pipeline: tiny_pipeline}
"""


def test_a_cycle_through_pipeline_triggers_is_skipped_at_run_time(project: Project) -> None:
    """followed (outside) -> b runs tiny_pipeline -> a would run followed_pipeline again: cycle."""
    project.write_config(CYCLE)
    daemon = start(project, {"ZENML_SCHEDULER_SHUTDOWN_GRACE": "5s"})
    outside(project, 0.5)
    wait_for(lambda: rows(project, "a"), 180, "the cycle decision on a")
    assert daemon.stop() == 0
    (b,) = rows(project, "b")
    assert b["status"] == "succeeded" and json.loads(b["chain_json"]) == ["followed_pipeline"]
    (a,) = rows(project, "a")
    assert a["status"] == "skipped" and a["reason"].startswith("cycle:"), a
    assert a["upstream"] == b["run_key"]
    assert json.loads(a["chain_json"]) == ["followed_pipeline", "tiny_pipeline"]


def test_health_says_when_the_follower_is_down(project: Project, stand_in: dict[str, str], tmp_path: Path) -> None:
    project.write_config(FOLLOWING)
    daemon = project.start_daemon("--no-check-pipelines", env={**stand_in, "STAND_IN_FOLLOWER": "crash"})
    wait_for(lambda: follower_state(project).get("state") == "down", 60, "the follower's death")
    health = project.cli("health", "--json")
    assert health.returncode == 0  # the daemon is healthy; its follower is not
    report = json.loads(health.stdout)["follower"]
    assert report["state"] == "down" and "crashed on purpose" in report["error"], report
    wait_for(lambda: len(events(project, "follower-died")) >= 2, 30, "a restart with back-off")
    delays = [e["details"]["restart_in_s"] for e in events(project, "follower-died")]
    assert delays[:2] == [1.0, 2.0]
    assert daemon.stop() == 0


def test_the_bundled_drift_example_retrains_on_drifted_data_only(project: Project) -> None:
    """The README's three commands on the bundled jobs, with the real pipelines: a drift check on
    the drifted sample makes retrain-on-drift train on it; one on the current sample does not."""
    zenml_env.make_project(project.root / "demo", with_training=True)
    demo = Project(project.root / "demo", project.env)
    shutil.copytree(REPO / "data" / "samples", demo.root / "data" / "samples")
    bundled = yaml.safe_load((REPO / "schedules.yaml").read_text())
    jobs = {name: bundled["jobs"][name] for name in ("drift-check", "retrain-on-drift")}
    demo.write_config(yaml.safe_dump({"version": 1, "defaults": bundled["defaults"], "jobs": jobs}))
    daemon = demo.start_daemon()
    project.daemons.append(daemon)
    wait_for(lambda: follower_state(demo).get("state") == "running", 180, "the daemon and its follower")
    drifted = demo.cli("trigger", "drift-check", "--param", "current_url=data/samples/drifted.csv", "--wait")
    assert drifted.returncode == 0, drifted.stderr + daemon.output
    wait_for(lambda: [r for r in rows(demo, "retrain-on-drift") if r["status"] == "succeeded"], 180, "the retrain")
    calm = demo.cli("trigger", "drift-check", "--wait")
    assert calm.returncode == 0, calm.stderr
    wait_for(lambda: len(events(demo, "after-not-matched", "retrain-on-drift")) == 1, 60, "the second decision")
    history = demo.cli("history", "--job", "retrain-on-drift")
    assert daemon.stop() == 0

    checks = rows(demo, "drift-check")
    (retrain,) = rows(demo, "retrain-on-drift")
    assert retrain["upstream"] == checks[0]["run_key"] and retrain["run_key"].endswith(checks[0]["zenml_run_id"])
    assert json.loads(retrain["parameters_json"])["parameters"]["data_url"] == "data/samples/drifted.csv"
    (matched,) = events(demo, "after-matched", "retrain-on-drift")
    assert matched["details"]["reads"]["metadata.drift_score"] > 0.2
    (not_matched,) = events(demo, "after-not-matched", "retrain-on-drift")
    assert not_matched["details"]["reads"]["metadata.drift_score"] < 0.2
    assert not_matched["details"]["upstream"] == checks[1]["run_key"]
    assert checks[0]["run_key"] in history.stdout
