"""Turn a ``"package.module:attribute"`` reference into a ZenML pipeline.

Shared by the launch child (``scheduler.child``) and the configuration check
(``scheduler.child.check``), so both report an unresolvable reference with
the same words.

ZenML is imported lazily, so the reference-parsing helpers can be used before
ZenML is loaded (the launch child relies on that to keep signals prompt).
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zenml.pipelines.pipeline_definition import Pipeline

REF_FORMAT = '"package.module:attribute"'
REF_EXAMPLE = '"pipelines.training:training_pipeline"'
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF_RE = re.compile(rf"^{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*$")


class PipelineRefError(Exception):
    """A pipeline reference that cannot be turned into a ZenML pipeline."""


def describe_exception(exc: BaseException) -> str:
    """``Type: message``, or just the type when the message is empty."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def split_ref(ref: object) -> tuple[str, str]:
    """Split a pipeline reference into module and attribute path.

    Raises:
        PipelineRefError: When the reference is not of the expected form.
    """
    if not isinstance(ref, str) or not _REF_RE.match(ref.strip()):
        raise PipelineRefError(f"invalid pipeline reference {ref!r}: expected {REF_FORMAT}, e.g. {REF_EXAMPLE}")
    module_name, _, attribute = ref.strip().partition(":")
    return module_name, attribute


def prepare_import_path(project_root: str) -> None:
    """Make the project importable and the source root ZenML records.

    ZenML otherwise derives its source root from a ``.zen`` folder or from the
    folder of ``__main__``; under ``python -m scheduler.<x>`` the latter is this
    package, so every user source would be recorded as UNKNOWN.
    """
    from zenml.utils import source_utils

    root = str(Path(project_root).resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    source_utils.set_custom_source_root(root)


def import_pipeline_module(module_name: str, project_root: str) -> ModuleType:
    """Import ``module_name``, telling a missing module from a broken one.

    Raises:
        PipelineRefError: With a message naming which of the two happened.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only a miss on the module itself (or a parent package) means "not
        # found"; a missing dependency imported by the module is a failure.
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise PipelineRefError(f"module {module_name!r} not found (looked in {project_root})") from exc
        raise PipelineRefError(f"importing {module_name!r} failed: {describe_exception(exc)}") from exc
    except (Exception, SystemExit) as exc:
        raise PipelineRefError(f"importing {module_name!r} failed: {describe_exception(exc)}") from exc


def pipeline_from_module(module: ModuleType, ref: str) -> Pipeline:
    """Look the attribute part of ``ref`` up in ``module`` and check its type.

    Raises:
        PipelineRefError: When the attribute is missing or not a pipeline.
    """
    from zenml.pipelines.pipeline_definition import Pipeline
    from zenml.steps import BaseStep

    module_name, attribute = split_ref(ref)
    obj: Any = module
    walked = module_name
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise PipelineRefError(f"{walked} has no attribute {part!r}")
        obj = getattr(obj, part)
        walked = f"{walked}.{part}" if walked != module_name else f"{module_name}:{part}"
    if not isinstance(obj, Pipeline):
        kind = "ZenML step" if isinstance(obj, BaseStep) else type(obj).__name__
        article = "an" if kind[0].lower() in "aeiou" else "a"
        raise PipelineRefError(f"{ref} is {article} {kind}, not a ZenML pipeline")
    return obj


def load_pipeline(ref: str, project_root: str) -> Pipeline:
    """Resolve ``ref`` against ``project_root`` (the launch child's entry point)."""
    module_name, _ = split_ref(ref)
    prepare_import_path(project_root)
    module = import_pipeline_module(module_name, project_root)
    return pipeline_from_module(module, ref)
