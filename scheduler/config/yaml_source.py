"""YAML to plain data, keeping where every key and value stood in the file.

PyYAML's loaders silently keep the last of duplicate keys and forget positions; we compose
the node graph ourselves so that duplicates are errors and every later message can point at
``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from scheduler.errors import ConfigError, Problem

try:  # libyaml is ~10x faster on big files; the pure-Python loader is the fallback
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]
Position = tuple[int, int]


@dataclass
class SourceMap:
    """1-based (line, column) of each value and each mapping key, by path from the root."""

    file: str
    values: dict[Path, Position] = field(default_factory=dict)
    keys: dict[Path, Position] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Position:
        """Position of `path`, or of its nearest ancestor that has one."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return (1, 1)

    def problem(self, path: Path, message: str, *, key: bool = False, severity: str = "error") -> Problem:
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, message, severity)


def load_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map; raise ConfigError if malformed."""
    source = SourceMap(file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem(file, line, column, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"invalid YAML: {exc}")]) from None
    if node is None:
        return None, source
    problems: list[Problem] = []
    data = _build(node, (), source, problems, yaml.constructor.SafeConstructor())
    if problems:
        raise ConfigError(problems)
    return data, source


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(
    node: yaml.Node,
    path: Path,
    source: SourceMap,
    problems: list[Problem],
    constructor: yaml.constructor.SafeConstructor,
) -> Any:
    source.values[path] = _position(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = _position(key_node)
                problems.append(Problem(source.file, line, column, "mapping keys must be plain scalars"))
                continue
            key = constructor.construct_object(key_node)
            if isinstance(key, (int, float, bool)) or key is None:
                key = key_node.value
            child = (*path, key)
            if key in result:
                line, column = _position(key_node)
                first_line, first_col = source.keys[child]
                problems.append(
                    Problem(
                        source.file,
                        line,
                        column,
                        f"duplicate key {key!r} (first defined at line {first_line}, column {first_col})",
                    )
                )
                continue
            source.keys[child] = _position(key_node)
            result[key] = _build(value_node, child, source, problems, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, index), source, problems, constructor) for index, item in enumerate(node.value)]
    return constructor.construct_object(node)
