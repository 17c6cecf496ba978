"""The daemon makes room for runs: its soft open-files limit is raised at start, and the
service unit asks systemd for as many."""

from __future__ import annotations

import configparser
import resource
import subprocess
import sys
from pathlib import Path

from scheduler import tuning

UNIT = Path(__file__).parents[2] / "deploy" / "zenml-scheduler.service"
PROBE = (
    "import resource; from scheduler.daemon.open_files import raise_open_files_limit;"
    "print(raise_open_files_limit(), *resource.getrlimit(resource.RLIMIT_NOFILE))"
)


def probe(soft: int, hard: int) -> list[int]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, preexec_fn=limit, check=True)
    return [int(field) for field in out.stdout.split()]


def test_the_soft_limit_is_raised_up_to_the_hard_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # a child may lower it, not raise it
    assert probe(256, 1024) == [1024, 1024, 1024]
    wanted = min(hard, tuning.OPEN_FILES_WANTED)
    assert probe(256, hard) == [wanted, wanted, hard]
    assert probe(900, 1000) == [1000, 1000, 1000]
    assert probe(1000, 1000) == [1000, 1000, 1000]  # already there: unchanged


def test_the_unit_sets_limit_nofile() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    assert int(unit["Service"]["LimitNOFILE"]) >= tuning.OPEN_FILES_WANTED
