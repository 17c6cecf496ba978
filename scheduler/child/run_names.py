"""A launch's ZenML run name must be its own.

ZenML run names are unique per project, and a ZenML store may be shared by several daemons
with state databases of their own. A launch whose name is already taken must therefore fail
as such, and must never look the run up by that name afterwards: the lookup would return
another launch's run, whose id this child would then report as its own.

ZenML is imported lazily (the launch child imports this before ZenML is loaded).
"""

from __future__ import annotations


class RunNameTaken(Exception):
    """A ZenML run with the launch's run name exists already, created by someone else."""

    def __init__(self, run_name: str) -> None:
        super().__init__(
            f"a ZenML run named {run_name!r} already exists in this ZenML project, so this launch "
            "did not start a run (another scheduler sharing the ZenML store may have used the name)"
        )
        self.run_name = run_name


def ensure_name_free(run_name: str) -> None:
    """Raise `RunNameTaken` when the store already holds a run named ``run_name``.

    Checked before the pipeline is called, so that a run found by name after a failed call is
    known to be this launch's own.
    """
    from zenml.client import Client

    try:
        Client().get_pipeline_run(run_name, allow_name_prefix_match=False)
    except KeyError:
        return
    raise RunNameTaken(run_name)


def is_name_conflict(exc: BaseException, run_name: str) -> bool:
    """Whether the pipeline call failed because another process created ``run_name`` first."""
    from zenml.exceptions import EntityExistsError

    return isinstance(exc, EntityExistsError) and f"Pipeline run name '{run_name}' already exists" in str(exc)
