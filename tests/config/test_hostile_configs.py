"""Hostile schedules.yaml files: each is refused whole, at its exact file:line:col, quickly and in
bounded memory, by the loader and by `validate`; never a traceback, never a config that passes
`validate` and then crashes the daemon.

The corpus lives in tests/fixtures/hostile_configs/; each file's first line says what to expect:
``# expect LINE:COL: text the message contains``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from scheduler.cli.main import main
from scheduler.config.loader import load_config
from scheduler.errors import ConfigError

CORPUS = Path(__file__).parents[1] / "fixtures" / "hostile_configs"
FILES = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(rb"# expect (\d+):(\d+): (.*)")


def expectation(path: Path) -> tuple[int, int, str]:
    found = EXPECT.fullmatch(path.read_bytes().split(b"\n", 1)[0])
    assert found, f"{path.name}: the first line must say '# expect LINE:COL: text'"
    return int(found[1]), int(found[2]), found[3].decode()


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_hostile_file_is_refused_at_its_place(path: Path) -> None:
    line, column, text = expectation(path)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    found = [(p.file, p.line, p.column, p.message) for p in refused.value.problems]
    assert any(
        (file, at_line, at_column) == (str(path), line, column) and text in message
        for file, at_line, at_column, message in found
    ), found


def test_validate_refuses_every_file_with_exit_2_and_no_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZENML_SCHEDULER_STATE_DIR", str(tmp_path / "state"))
    wrong = []
    for path in FILES:
        line, column, _ = expectation(path)
        monkeypatch.setattr(sys, "argv", ["zenml-scheduler", "validate", "--no-pipelines", str(path)])
        with pytest.raises(SystemExit) as ended:
            main()
        captured = capsys.readouterr()
        output = captured.out + captured.err
        if ended.value.code != 2 or f"{path}:{line}:{column}" not in output or "Traceback" in output:
            wrong.append(f"{path.name}: exit {ended.value.code}: {output[-400:]}")
    assert not wrong, "\n".join(wrong)


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_text("version: 1\njobs: {}\n" + "# padding\n" * 2000)
    assert load_config(path, max_bytes=path.stat().st_size).jobs == {}  # at the limit: read
    with pytest.raises(ConfigError) as refused:
        load_config(path, max_bytes=path.stat().st_size - 1)
    assert "larger than" in refused.value.problems[0].message
    assert "config_max_bytes" in refused.value.problems[0].message


def test_the_default_size_limit_is_ten_megabytes(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    with path.open("w") as handle:
        handle.write("version: 1\njobs: {}\n")
        handle.write("#" * (10 * 1024 * 1024))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "larger than 10,485,760 bytes" in refused.value.problems[0].message


def test_a_folder_given_as_the_config_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path)
    assert "it is a folder, not a file" in refused.value.problems[0].message
