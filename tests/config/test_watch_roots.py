"""Watch folders the loader refuses: the daemon's own state (it would trigger itself) and kernel
pseudo file systems, each at the position of `watch.path`."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.config import watch_roots
from scheduler.config.loader import load_config
from scheduler.config.model import Config
from scheduler.config.watch_roots import StatePaths
from scheduler.errors import ConfigError


def watching(tmp_path: Path, folder: str | Path, state: StatePaths | None, recursive: bool = False) -> Config:
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "version: 1\njobs:\n  files:\n    pipeline: x.y:z\n"
        f"    watch: {{path: '{folder}', recursive: {str(recursive).lower()}}}\n"
    )
    return load_config(path, state=state)


def refusal(tmp_path: Path, folder: str | Path, state: StatePaths | None, recursive: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        watching(tmp_path, folder, state, recursive)
    [problem] = info.value.problems
    assert (problem.line, problem.column) == (5, 19), str(problem)  # at the value of watch.path
    return problem.message


@pytest.mark.parametrize("recursive", [False, True])
def test_a_watch_on_or_inside_the_state_directory_is_refused(tmp_path: Path, recursive: bool) -> None:
    state = StatePaths(tmp_path / ".zenml-scheduler")
    (state.folder / "runs").mkdir(parents=True)
    for folder in (".zenml-scheduler", ".zenml-scheduler/runs", ".zenml-scheduler/not-yet-made"):
        message = refusal(tmp_path, folder, state, recursive)
        assert f"inside the state directory {state.folder}" in message and "--state-dir" in message


def test_a_recursive_watch_above_the_state_directory_is_refused(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "var" / "state")
    state.folder.mkdir(parents=True)
    message = refusal(tmp_path, ".", state, recursive=True)
    assert f"contains the state directory {state.folder}" in message and "recursive: false" in message
    assert "contains the state directory" in refusal(tmp_path, "var", state, recursive=True)
    # Without recursion the state directory is only a folder entry there, never dispatched.
    assert watching(tmp_path, ".", state).jobs["files"].watch_root == tmp_path
    assert watching(tmp_path, "var", state).jobs["files"].watch_root == tmp_path / "var"


def test_a_sibling_of_the_state_directory_may_be_watched(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / ".zenml-scheduler")
    state.folder.mkdir()
    (tmp_path / "incoming").mkdir()
    assert watching(tmp_path, "incoming", state, recursive=True).jobs["files"].watch_root == tmp_path / "incoming"
    # A name that merely starts like the state directory is a sibling too.
    assert watching(tmp_path, ".zenml-scheduler-inbox", state, recursive=True).jobs


def test_a_symlink_to_the_state_directory_is_refused_like_the_directory(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "state")
    state.folder.mkdir()
    (tmp_path / "inbox").symlink_to(state.folder)
    assert "inside the state directory" in refusal(tmp_path, "inbox", state)


def test_the_folder_of_a_sqlite_database_kept_elsewhere_is_refused(tmp_path: Path) -> None:
    state = StatePaths(tmp_path / "var" / "state", database=tmp_path / "data" / "db" / "state.db")
    (tmp_path / "data" / "db").mkdir(parents=True)
    assert "sees the state database" in refusal(tmp_path, "data/db", state)
    assert "sees the state database" in refusal(tmp_path, "data", state, recursive=True)
    assert watching(tmp_path, "data", state).jobs  # not recursive: db/ is only a folder entry


@pytest.mark.parametrize("folder", ["/proc", "/proc/self/fd", "/sys", "/sys/fs/cgroup", "/dev", "/dev/pts"])
def test_kernel_pseudo_file_systems_are_refused(tmp_path: Path, folder: str) -> None:
    for state in (None, StatePaths(tmp_path / "state")):
        assert "kernel pseudo file system" in refusal(tmp_path, folder, state)


def test_shared_memory_and_ordinary_folders_are_not_pseudo_file_systems(tmp_path: Path) -> None:
    assert watching(tmp_path, "/dev/shm", None).jobs
    assert watching(tmp_path, tmp_path / "anything", None).jobs


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:6 / /srv/kernel rw,nosuid - debugfs debugfs rw
26 22 0:7 / /srv/trace rw - tracefs tracefs rw
27 26 8:2 / /srv/trace rw - ext4 /dev/sda2 rw
28 22 8:3 / /mnt/my\\040disk rw - xfs /dev/sda3 rw
29 28 0:8 / /mnt/my\\040disk/cg rw - cgroup2 cgroup2 rw
"""


def test_mounts_are_found_in_mountinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mount type decides outside /proc, /sys and /dev: the longest mount point above the
    folder, a later mount on the same point hiding the earlier one, escaped spaces read back."""
    table = tmp_path / "mountinfo"
    table.write_text(MOUNTINFO)
    monkeypatch.setattr(watch_roots, "MOUNTINFO", table)
    mounts = watch_roots.read_mounts()
    assert watch_roots.virtual_fs_of(Path("/srv/kernel/tracing"), mounts) == "debugfs"
    assert watch_roots.virtual_fs_of(Path("/srv/trace"), mounts) is None  # ext4 mounted over tracefs
    assert watch_roots.virtual_fs_of(Path("/mnt/my disk/data"), mounts) is None
    assert watch_roots.virtual_fs_of(Path("/mnt/my disk/cg/x"), mounts) == "cgroup2"
    assert watch_roots.virtual_fs_of(Path("/srv/kernelish"), mounts) is None
    assert "(debugfs)" in refusal(tmp_path, "/srv/kernel", None)
