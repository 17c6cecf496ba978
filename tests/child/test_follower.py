"""The run follower: its line protocol and window as tables, and the real child against real runs.

The slow tests start ``python -m scheduler.child.follower`` as the daemon would (stdin a pipe,
stdout read line by line) and run pipelines beside it the way anyone else would: a plain Python
script that calls the pipeline.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from scheduler.child import follower
from scheduler.child.followed_runs import Candidate, RunWindow, json_value, poll
from scheduler.child.protocol import (
    FOLLOWER_MODULE,
    MAX_FOLLOWER_LINE_BYTES,
    FollowedRun,
    FollowerNote,
    SpecError,
    parse_follower_line,
)
from scheduler.child.store_setup import MARKER_FILE
from tests import zenml_env
from tests.child.test_launch import make_spec, start_child

T = TypeVar("T")


def heavy(test: T) -> T:
    """Real ZenML runs: kept on the worker that runs the other ZenML tests (see tests/conftest.py)."""
    return pytest.mark.slow(pytest.mark.xdist_group("zenml")(test))  # type: ignore[no-any-return]


T0 = datetime(2030, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- the line protocol -------------------------------------------------------------------------

RUN_LINE: dict[str, Any] = {
    "kind": "run",
    "zenml_run_id": "3f1c0de4-5a5e-4c8e-9a51-1f1a5d3c2b10",
    "zenml_run_name": "nightly-1",
    "pipeline": "training_pipeline",
    "status": "completed",
    "started_at": "2030-05-01T12:00:00+00:00",
    "finished_at": "2030-05-01T12:00:05.250000+00:00",
    "parameters": {"model_type": "forest"},
    "metadata": {"accuracy": 0.93},
    "steps": {"train": {"metadata": {"rows": 100}}},
    "artifacts": {"train": {"model": "0b0c4d1e-8a38-4d36-9d8f-4a0b8f4b1c77"}},
    "tags": ["nightly"],
}


def run_line(**changes: Any) -> str:
    line = {**RUN_LINE, **changes}
    return json.dumps({k: v for k, v in line.items() if v is not ...})


RUN = FollowedRun(
    zenml_run_id=RUN_LINE["zenml_run_id"],
    zenml_run_name="nightly-1",
    pipeline="training_pipeline",
    status="completed",
    started_at=at(0),
    finished_at=at(5.25),
    parameters={"model_type": "forest"},
    metadata={"accuracy": 0.93},
    steps={"train": {"metadata": {"rows": 100}}},
    artifacts={"train": {"model": RUN_LINE["artifacts"]["train"]["model"]}},
    tags=["nightly"],
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (run_line(), RUN),
        # another offset is the same instant, read back in UTC; a run may have no start time
        (run_line(started_at=None, finished_at="2030-05-01T14:00:05.25+02:00"), replace(RUN, started_at=None)),
        (run_line(started_at=...), replace(RUN, started_at=None)),
        (run_line(truncated=True, parameters={}), replace(RUN, truncated=True, parameters={})),
        ('{"kind": "ready", "at": "2030-05-01T12:00:00+00:00"}', FollowerNote("ready", at(0))),
        ('{"kind": "caught-up", "at": "2030-05-01T12:00:01+00:00"}', FollowerNote("caught-up", at(1))),
        ('{"kind": "alive", "at": "2030-05-01T12:00:02Z"}', FollowerNote("alive", at(2))),
        (
            '{"kind": "error", "message": "OperationalError: down"}',
            FollowerNote("error", None, "OperationalError: down"),
        ),
        ('{"kind": "error", "message": "", "at": "2030-05-01T12:00:00+00:00"}', FollowerNote("error", at(0), "")),
    ],
)
def test_parse_follower_line_reads(line: str, expected: FollowedRun | FollowerNote) -> None:
    parsed = parse_follower_line(line)
    assert parsed == expected
    for moment in (getattr(parsed, "finished_at", None), getattr(parsed, "at", None)):
        assert moment is None or moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"kind": "dance", "at": "2030-05-01T12:00:00+00:00"}', "unknown kind"),
        ('{"at": "2030-05-01T12:00:00+00:00"}', "unknown kind"),
        ('{"kind": "ready"}', "'at'"),
        ('{"kind": "alive", "at": "2030-05-01T12:00:00"}', "no UTC offset"),
        ('{"kind": "alive", "at": "yesterday"}', "not an ISO-8601 time"),
        ('{"kind": "error"}', "'message'"),
        (run_line(zenml_run_id=""), "'zenml_run_id'"),
        (run_line(zenml_run_name=...), "'zenml_run_name'"),
        (run_line(status=3), "'status'"),
        (run_line(finished_at=None), "'finished_at'"),
        (run_line(started_at="2030-05-01 12:00"), "'started_at'"),
        (run_line(parameters=[]), "'parameters'"),
        (run_line(metadata=None), "'metadata'"),
        (run_line(steps={"train": {}}), "'steps'"),
        (run_line(artifacts={"train": {"model": 7}}), "'artifacts'"),
        (run_line(tags="nightly"), "'tags'"),
        (run_line(truncated="yes"), "'truncated'"),
        (run_line(metadata={"loss": float("nan")}), "NaN"),
        (run_line(metadata={"big": "x" * MAX_FOLLOWER_LINE_BYTES}), "longer than"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),
    ],
)
def test_parse_follower_line_refuses(line: str, complaint: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_follower_line(line)
    assert complaint in str(raised.value)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5, 0.5),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (True, True),
        (None, None),
        (3, 3),
        ("text", "text"),
        ((1, 2), [1, 2]),
        ({3, 1, 2}, [1, 2, 3]),
        ({"a": {"b": [float("nan")]}, 1: "one"}, {"a": {"b": ["nan"]}, "1": "one"}),
        (Path("/tmp/x"), "/tmp/x"),
        (b"raw", "b'raw'"),
    ],
)
def test_json_value(value: Any, expected: Any) -> None:
    converted = json_value(value)
    assert converted == expected
    assert type(converted) is type(expected)
    json.dumps(converted, allow_nan=False)


def test_an_oversized_run_line_is_slimmed_below_the_limit() -> None:
    line = {**RUN_LINE, "metadata": {"blob": "x" * MAX_FOLLOWER_LINE_BYTES}}
    parsed = parse_follower_line(follower.encode_line(line))
    assert isinstance(parsed, FollowedRun)
    assert (parsed.truncated, parsed.metadata, parsed.parameters) == (True, {}, {})
    assert parsed.steps == {"train": {"metadata": {}}} and parsed.artifacts == RUN_LINE["artifacts"]

    many_steps = {**line, "steps": {f"s{i}" * 2000: {"metadata": {}} for i in range(400)}}
    parsed = parse_follower_line(follower.encode_line(many_steps))
    assert isinstance(parsed, FollowedRun)
    assert (parsed.truncated, parsed.steps, parsed.artifacts, parsed.zenml_run_id) == (
        True, {}, {}, RUN_LINE["zenml_run_id"],
    )  # fmt: skip
    assert parse_follower_line(follower.encode_line(RUN_LINE)) == parse_follower_line(run_line())


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--since", "2030-05-01T12:00:00"],  # no offset: ambiguous
        ["--since", "soon"],
        ["--since", "2030-05-01T12:00:00Z", "--interval", "0"],
        ["--since", "2030-05-01T12:00:00Z", "--overlap", "-1"],
        ["--since", "2030-05-01T12:00:00Z", "--page", "0"],
        ["--since", "2030-05-01T12:00:00Z", "--surprise"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert follower.main(argv) == follower.EXIT_USAGE
    assert "usage" in capsys.readouterr().err


# --- the window --------------------------------------------------------------------------------


@dataclass
class FakeRun:
    ended: datetime
    finished: bool = True


class FakeSource:
    """The store as the window sees it: runs with end times, some not finished yet."""

    def __init__(self, **runs: FakeRun) -> None:
        self.runs = dict(runs)
        self.listed: list[tuple[datetime, list[str]]] = []
        self.fail_after: int | None = None

    def candidates(self, ended_from: datetime, excluded: list[str]) -> Iterator[Candidate]:
        self.listed.append((ended_from, list(excluded)))
        ordered = sorted(self.runs.items(), key=lambda item: item[1].ended)
        for i, (run_id, run) in enumerate(r for r in ordered if r[1].ended >= ended_from and r[0] not in excluded):
            if self.fail_after is not None and i >= self.fail_after:
                raise RuntimeError("store unreachable")
            yield Candidate(run_id=run_id, finished=run.finished)

    def describe(self, run_id: str) -> tuple[datetime, dict[str, Any]] | None:
        run = self.runs.get(run_id)
        if run is None or not run.finished:
            return None
        return run.ended, {"kind": "run", "zenml_run_id": run_id}


def polled(source: FakeSource, window: RunWindow, now: datetime) -> list[str]:
    out: list[dict[str, Any]] = []
    poll(source, window, out.append, now)
    return [line["zenml_run_id"] for line in out]


def test_the_first_poll_sends_what_ended_since_the_cursor_minus_the_overlap_oldest_first() -> None:
    source = FakeSource(
        older=FakeRun(at(-61)),
        old=FakeRun(at(-59.7)),  # in the whole second the store lists, but before the window start
        edge=FakeRun(at(-59.5)),  # exactly at the window start
        late=FakeRun(at(5)),
        mid=FakeRun(at(-10)),
        running=FakeRun(at(1), finished=False),
    )
    window = RunWindow.since(at(0.5), timedelta(seconds=60))
    assert polled(source, window, at(10)) == ["edge", "mid", "late"]
    assert source.listed == [(at(-60), [])]
    assert polled(source, window, at(11)) == []  # nothing twice
    assert source.listed[-1] == (at(-50), ["late", "mid"])  # handled ids left out of the query


def test_runs_that_finish_or_appear_late_inside_the_overlap_are_sent_once() -> None:
    source = FakeSource(a=FakeRun(at(1), finished=False))
    window = RunWindow.since(at(0), timedelta(seconds=60))
    assert polled(source, window, at(2)) == []
    source.runs["a"].finished = True
    # a run that became visible after the poll that covered its end time (slow commit, skew)
    source.runs["b"] = FakeRun(at(1.5))
    assert polled(source, window, at(3)) == ["a", "b"]
    assert polled(source, window, at(4)) == []


def test_ids_are_forgotten_once_they_leave_the_window() -> None:
    source = FakeSource(a=FakeRun(at(0)), b=FakeRun(at(30)))
    window = RunWindow.since(at(0), timedelta(seconds=60))
    assert polled(source, window, at(31)) == ["a", "b"]
    assert set(window.handled) == {"a", "b"}
    polled(source, window, at(61))  # window from at(1): a can no longer be listed
    assert set(window.handled) == {"b"}
    polled(source, window, at(95))
    assert window.handled == {}
    assert window.start == at(35)


def test_a_failed_poll_keeps_the_window_and_repeats_nothing() -> None:
    source = FakeSource(a=FakeRun(at(1)), b=FakeRun(at(2)), c=FakeRun(at(3)))
    window = RunWindow.since(at(0), timedelta(seconds=60))
    source.fail_after = 1
    out: list[dict[str, Any]] = []
    with pytest.raises(RuntimeError):
        poll(source, window, out.append, at(500))
    assert [line["zenml_run_id"] for line in out] == ["a"]
    assert window.start == at(-60)  # not moved on: the next poll lists the same period
    source.fail_after = None
    assert polled(source, window, at(501)) == ["b", "c"]
    assert window.start == at(441)


def test_the_excluded_ids_are_the_latest_ending_ones_and_bounded() -> None:
    window = RunWindow.since(at(0), timedelta(seconds=60))
    for i in range(150):
        window.handle(f"r{i}", at(i / 10))
    latest = window.latest_handled(100)
    assert len(latest) == 100 and latest[0] == "r149" and "r49" not in latest


# --- the real follower -------------------------------------------------------------------------

RUNNER = """
import json, sys
from tinypipes.followed import followed_pipeline
options = json.loads(sys.argv[1])
followed_pipeline.with_options(run_name=options.pop("run_name"))(**options)
"""


class FollowerProcess:
    """``python -m scheduler.child.follower`` with its lines parsed as they arrive."""

    def __init__(self, project: Path, env: dict[str, str], stderr: Path, *args: str) -> None:
        self._stderr_path = stderr
        self._stderr = open(stderr, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [zenml_env.PYTHON, "-m", FOLLOWER_MODULE, *args],
            cwd=project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
        )  # fmt: skip
        self.lines: list[FollowedRun | FollowerNote] = []
        self._arrived: queue.Queue[FollowedRun | FollowerNote | str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                self._arrived.put(parse_follower_line(raw.rstrip("\n")))
            except ValueError as exc:
                self._arrived.put(f"unparseable line {raw!r}: {exc}")

    def wait_for(self, matches: Callable[[FollowedRun | FollowerNote], bool], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._arrived.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout}s; got {self.lines}\n{self.stderr()}") from None
            assert not isinstance(item, str), item
            self.lines.append(item)
            if matches(item):
                return item

    def run_named(self, name: str, timeout: float = 120) -> FollowedRun:
        """The line of the run ``name``, among those already read or those to come."""

        def named(item: FollowedRun | FollowerNote) -> bool:
            return isinstance(item, FollowedRun) and item.zenml_run_name == name

        earlier = [item for item in self.lines if named(item)]
        return earlier[0] if earlier else self.wait_for(named, timeout, name)  # type: ignore[return-value]

    def note(self, kind: str, timeout: float = 120) -> FollowerNote:
        return self.wait_for(lambda i: isinstance(i, FollowerNote) and i.kind == kind, timeout, kind)

    def drain(self) -> None:
        while not self._arrived.empty():
            item = self._arrived.get_nowait()
            assert not isinstance(item, str), item
            self.lines.append(item)

    def stop_timed(self, stop: Callable[[], None]) -> tuple[int, float]:
        """Do ``stop`` and wait: the exit status and the seconds it took."""
        began = time.monotonic()
        stop()
        code = self.proc.wait(timeout=30)
        return code, time.monotonic() - began

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self._stderr_path.read_text(encoding="utf-8")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture(scope="module")
def follow_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = zenml_env.make_project(tmp_path_factory.mktemp("project"))
    (project / "run_followed.py").write_text(RUNNER, encoding="utf-8")
    return project


@pytest.fixture(scope="module")
def follow_env(follow_project: Path, zenml_config: Path) -> dict[str, str]:
    return zenml_env.child_env(follow_project, zenml_config)


def start_outsider_run(project: Path, env: dict[str, str], **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [zenml_env.PYTHON, "run_followed.py", json.dumps(options)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


@dataclass
class Followed:
    follower: FollowerProcess
    completed: FollowedRun
    failed: FollowedRun
    since: datetime


@pytest.fixture(scope="module")
def followed(
    follow_project: Path, follow_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Followed]:
    """One follower, and two runs (one failing) made beside it by plain scripts."""
    since = datetime.now(timezone.utc)
    stderr = tmp_path_factory.mktemp("follower") / "stderr.txt"
    proc = FollowerProcess(follow_project, follow_env, stderr, "--since", since.isoformat(), "--alive", "1")
    try:
        proc.note("ready")
        proc.note("caught-up")
        names = {"ok": f"followed-ok-{uuid.uuid4().hex[:8]}", "boom": f"followed-boom-{uuid.uuid4().hex[:8]}"}
        runs = [
            start_outsider_run(follow_project, follow_env, run_name=names["ok"], score=0.75),
            start_outsider_run(follow_project, follow_env, run_name=names["boom"], score=0.25, fail=True),
        ]
        outputs = [run.communicate(timeout=180)[0] for run in runs]
        assert runs[0].returncode == 0, outputs[0]
        assert runs[1].returncode != 0 and "asked to fail" in outputs[1], outputs[1]
        completed, failed = proc.run_named(names["ok"], 30), proc.run_named(names["boom"], 30)
        yield Followed(follower=proc, completed=completed, failed=failed, since=since)
    finally:
        proc.stop()


@heavy
def test_a_completed_run_is_reported_with_its_metadata_and_artifact(
    followed: Followed, follow_env: dict[str, str]
) -> None:
    run = followed.completed
    stored = zenml_env.describe_run(follow_env, run.zenml_run_name)
    assert run.zenml_run_id == stored["id"]
    assert (run.pipeline, run.status, run.tags) == ("followed_pipeline", "completed", [])
    assert run.parameters == {"score": 0.75, "fail": False}
    # What the step logged on the run, and only that, is the run's metadata...
    assert run.metadata == {"score": 0.75, "stage": "measured"}
    # ...and what it logged on itself the step's (a Uri as a string, NaN as "nan").
    assert run.steps == {"measure": {"metadata": {"rows": 3, "source": "s3://bucket/key", "ratio": "nan"}}}
    assert run.artifacts == {"measure": {"output": stored["outputs"]["measure.output"]["id"]}}
    assert run.started_at is not None and followed.since <= run.started_at <= run.finished_at
    assert (
        run.finished_at.isoformat()
        == datetime.fromisoformat(stored["end_time"]).replace(tzinfo=timezone.utc).isoformat()
    )
    assert not run.truncated


@heavy
def test_a_failed_run_is_reported_failed(followed: Followed) -> None:
    run = followed.failed
    assert (run.status, run.parameters) == ("failed", {"score": 0.25, "fail": True})
    assert run.metadata == {"score": 0.25, "stage": "measured"}  # logged before the step raised
    assert run.artifacts == {"measure": {}}


@heavy
def test_each_run_once_oldest_first_caught_up_once_and_alive_while_quiet(followed: Followed) -> None:
    followed.follower.drain()
    lines = followed.follower.lines
    runs = [line for line in lines if isinstance(line, FollowedRun)]
    assert len({run.zenml_run_id for run in runs}) == len(runs)
    assert [run.finished_at for run in runs] == sorted(run.finished_at for run in runs)
    kinds = [line.kind for line in lines if isinstance(line, FollowerNote)]
    assert kinds[:2] == ["ready", "caught-up"]
    assert kinds.count("ready") == kinds.count("caught-up") == 1
    assert "alive" in kinds and "error" not in kinds  # --alive 1 while the runs took seconds


@heavy
def test_the_window_starts_at_since_minus_overlap_and_sigterm_ends_a_sleeping_follower(
    followed: Followed, follow_project: Path, follow_env: dict[str, str], tmp_path: Path
) -> None:
    first, second = sorted([followed.completed, followed.failed], key=lambda run: run.finished_at)
    assert second.finished_at - first.finished_at > timedelta(microseconds=2)
    start = first.finished_at + (second.finished_at - first.finished_at) / 2
    since = start + timedelta(seconds=1.5)
    proc = FollowerProcess(
        follow_project, follow_env, tmp_path / "stderr.txt",
        "--since", since.isoformat(), "--overlap", "1.5", "--interval", "60",
    )  # fmt: skip
    try:
        proc.note("caught-up")
        runs = [line.zenml_run_id for line in proc.lines if isinstance(line, FollowedRun)]
        assert second.zenml_run_id in runs
        assert first.zenml_run_id not in runs
        time.sleep(0.5)  # well into its 60 s sleep
        code, took = proc.stop_timed(lambda: proc.proc.send_signal(signal.SIGTERM))
    finally:
        proc.stop()
    assert (code, took < 2) == (0, True), (code, took, proc.stderr())
    assert "follower stopping: signal 15" in proc.stderr()


@heavy
def test_stdin_eof_ends_a_following_follower(followed: Followed) -> None:
    proc = followed.follower
    assert proc.proc.poll() is None and proc.proc.stdin is not None
    code, took = proc.stop_timed(proc.proc.stdin.close)
    assert (code, took < 2) == (0, True), (code, took, proc.stderr())
    assert "follower stopping: stdin closed" in proc.stderr()


def _unreachable_store_env(env: dict[str, str], config: Path) -> dict[str, str]:
    # Nothing listens on port 1: every store access fails at once with "connection refused".
    return {
        **env,
        "ZENML_CONFIG_PATH": str(config),
        "ZENML_STORE_TYPE": "sql",
        "ZENML_STORE_URL": "mysql://user:secret@127.0.0.1:1/zenml",
    }


@pytest.mark.slow
def test_an_unreachable_store_is_an_error_line_per_poll_and_stdin_eof_ends_the_follower(
    follow_project: Path, follow_env: dict[str, str], tmp_path: Path
) -> None:
    env = _unreachable_store_env(follow_env, tmp_path / "zenml-config")
    proc = FollowerProcess(follow_project, env, tmp_path / "stderr.txt", "--since", T0.isoformat(), "--interval", "0.2")
    try:
        errors = [proc.note("error", timeout=60) for _ in range(3)]
        assert proc.proc.stdin is not None
        code, took = proc.stop_timed(proc.proc.stdin.close)
    finally:
        proc.stop()
    assert all(note.message and "Can't connect to MySQL server" in note.message for note in errors), errors
    assert not [line for line in proc.lines if isinstance(line, FollowerNote) and line.kind == "ready"]
    assert (code, took < 2) == (0, True), (code, took)
    assert not any("Traceback" in (note.message or "") for note in errors)  # tracebacks go to stderr
    assert "follower stopping: stdin closed" in proc.stderr()


@pytest.mark.slow
def test_a_closed_stdout_ends_the_follower_quietly(
    follow_project: Path, follow_env: dict[str, str], tmp_path: Path
) -> None:
    env = _unreachable_store_env(follow_env, tmp_path / "zenml-config")
    with open(tmp_path / "stderr.txt", "w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            [zenml_env.PYTHON, "-m", FOLLOWER_MODULE, "--since", T0.isoformat(), "--interval", "30"],
            cwd=follow_project, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = parse_follower_line(proc.stdout.readline())
            assert isinstance(first, FollowerNote) and first.kind == "error"
            time.sleep(0.3)  # into its 30 s sleep: only the closed pipe can wake it
            proc.stdout.close()
            code = proc.wait(timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stderr.seek(0)
        output = stderr.read()
    assert code == 0, output
    assert "BrokenPipe" not in output and "Exception ignored" not in output
    assert "follower stopping" not in output  # it was not asked to stop: it lost its reader


@heavy
def test_a_follower_and_a_launch_on_a_brand_new_store_both_work(tmp_path: Path) -> None:
    project = zenml_env.make_project(tmp_path / "project")
    config = tmp_path / "zenml-config"  # does not exist: no store yet
    env = zenml_env.child_env(project, config)
    spec = make_spec(project, tmp_path, "tinypipes.followed:followed_pipeline", parameters={"score": 0.5})
    proc = FollowerProcess(project, env, tmp_path / "stderr.txt", "--since", datetime.now(timezone.utc).isoformat())
    launch = start_child(spec, tmp_path, env)  # at the same moment: both initialise the store
    try:
        output, _ = launch.communicate(timeout=300)
        result = json.loads(Path(spec["result_path"]).read_text(encoding="utf-8"))
        assert (launch.returncode, result["status"]) == (0, "succeeded"), output
        run = proc.run_named(spec["run_name"], timeout=120)
    finally:
        proc.stop()
    assert (run.zenml_run_id, run.status, run.tags) == (result["zenml_run_id"], "completed", ["scheduler-test"])
    assert run.metadata == {"score": 0.5, "stage": "measured"}
    kinds = [line.kind for line in proc.lines if isinstance(line, FollowerNote)]
    assert kinds[:2] == ["ready", "caught-up"] and "error" not in kinds, proc.stderr()
    assert (config / MARKER_FILE).exists()
