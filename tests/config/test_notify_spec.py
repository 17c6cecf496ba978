"""`notify:` in schedules.yaml: the target schema, its defaults, and load errors at file:line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.config.loader import load_config
from scheduler.config.notify_spec import NotifyTarget
from scheduler.errors import ConfigError

TOKEN_URL = "https://hooks.example.com/services/T000/B000/s3cr3t-token"


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "schedules.yaml"
    path.write_text(text)
    return load_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [f"{p.line}:{p.column}: {p.message}" for p in info.value.problems]


def test_full_target_shape_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", "hunter2")
    config = load(
        tmp_path,
        f"""\
version: 1
jobs:
  train:
    pipeline: pipelines.training:training_pipeline
    every: 1h
    notify:
      - url: {TOKEN_URL}
        name: ops
        events: [succeeded, failed, timed_out, skipped, paused]
        secret_env: WEBHOOK_SECRET
        timeout: 3s
        retries: 5
        backoff: 500ms
      - url: http://127.0.0.1:8080/hook
""",
    )
    ops, plain = config.jobs["train"].spec.notify
    assert ops.display == "ops" and ops.secret_env == "WEBHOOK_SECRET"
    assert ops.events == ["succeeded", "failed", "timed_out", "skipped", "paused"]
    assert (ops.timeout_s, ops.retries) == (3.0, 5)
    assert [ops.delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # Defaults of a bare target.
    assert plain.events == ["failed", "timed_out"] and plain.secret_env is None
    assert (plain.timeout_s, plain.retries, plain.delay(1)) == (10.0, 3, 2.0)
    assert plain.display == "http://127.0.0.1:8080"


def test_defaults_are_inherited_and_a_job_list_replaces_them(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
version: 1
defaults:
  notify:
    - {url: "https://default.example.com/hook", name: default}
jobs:
  inherits: {pipeline: x.y:z, every: 1m}
  own:
    pipeline: x.y:z
    every: 1m
    notify: [{url: "https://own.example.com/hook", events: [succeeded]}]
  silent: {pipeline: x.y:z, every: 1m, notify: []}
""",
    )
    assert [t.display for t in config.jobs["inherits"].spec.notify] == ["default"]
    assert [t.display for t in config.jobs["own"].spec.notify] == ["https://own.example.com"]
    assert config.jobs["silent"].spec.notify == []


def test_unknown_event_is_rejected_listing_the_allowed_ones(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
jobs:
  a:
    pipeline: x.y:z
    every: 1m
    notify:
      - url: https://example.com/hook
        events: [failed, crashed]
""",
    )
    assert found == [
        "8:17: notify.0.events: unknown event 'crashed'; allowed: succeeded, failed, timed_out, skipped, paused"
    ]


def test_unset_secret_env_is_a_load_error_at_its_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_WEBHOOK_SECRET", raising=False)
    found = problems(
        tmp_path,
        """\
version: 1
defaults:
  notify:
    - url: https://example.com/hook
      secret_env: NO_SUCH_WEBHOOK_SECRET
jobs:
  a: {pipeline: x.y:z, every: 1m}
  b: {pipeline: x.y:z, every: 2m}
""",
    )
    # Reported once, at the default that every job inherits.
    assert found == ["5:19: notify[0].secret_env: environment variable 'NO_SUCH_WEBHOOK_SECRET' is not set (or empty)"]


def test_malformed_targets_are_rejected_with_positions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
version: 1
jobs:
  a:
    pipeline: x.y:z
    every: 1m
    notify:
      - url: ftp://example.com/hook
        retries: -1
        timeout: 0s
        secret_env: "not a name"
        header: x
""",
    )
    assert found == [
        "7:14: notify.0.url: expected an http:// or https:// URL with a host",
        "8:18: notify.0.retries: Input should be greater than or equal to 0",
        "9:18: notify.0.timeout: timeout must be more than 0s",
        "10:21: notify.0.secret_env: expected an environment variable name (e.g. WEBHOOK_SECRET), got 'not a name'",
        "11:9: unknown key 'header'",
    ]


@pytest.mark.parametrize("userinfo", ["ops:hunter2@", "hunter2@", ":hunter2@", "ops:@"])
def test_credentials_in_the_url_are_refused_without_repeating_them(tmp_path: Path, userinfo: str) -> None:
    """urllib cannot send user:password@ URLs: every delivery to one used to fail, one by one."""
    text = (
        "version: 1\njobs:\n  a:\n    pipeline: x.y:z\n    every: 1m\n    notify:\n"
        f"      - url: https://{userinfo}hooks.example.com/zenml\n"
    )
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    [problem] = info.value.problems
    assert (problem.line, problem.column) == (7, 14)
    assert problem.message.startswith("notify.0.url: the URL carries credentials (user:password@ before the host)")
    assert "secret_env" in problem.message and "X-Signature" in problem.message
    assert "hunter2" not in str(info.value) and "ops" not in str(info.value)


def test_the_url_is_not_stored_or_shown(tmp_path: Path) -> None:
    """The stored/audited spec and reprs carry the origin and a digest, never the token."""
    config = load(
        tmp_path,
        f"version: 1\njobs:\n  a: {{pipeline: x.y:z, every: 1m, notify: [{{url: '{TOKEN_URL}'}}]}}\n",
    )
    job = config.jobs["a"]
    stored = job.spec_dict()["notify"][0]["url"]
    assert stored.startswith("https://hooks.example.com/...#sha256:")
    assert "s3cr3t" not in job.spec_json and "s3cr3t" not in repr(job.spec)
    assert job.spec.notify[0].url == TOKEN_URL  # the sender still has it
    other = NotifyTarget(url=TOKEN_URL + "x").model_dump(mode="json")["url"]
    assert other != stored  # a changed URL still changes the job's digest
