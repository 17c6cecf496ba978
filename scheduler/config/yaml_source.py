"""YAML to plain data, keeping where every key and value stood in the file.

PyYAML's loaders silently keep the last of duplicate keys and forget positions; we compose
the node graph ourselves so that duplicates are errors and every later message can point at
``file:line:col``. Building plain data from the graph expands aliases, so it is bounded: a
"billion laughs" file (aliases of aliases), a recursive alias or absurd nesting is an error at
the place it happens, never gigabytes of memory or a RecursionError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from scheduler import tuning
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
        _check_depth(text, file)  # before composing, which recurses once per level
        node = yaml.compose(text, Loader=_Loader)
    except _TooBig as exc:
        raise ConfigError([exc.problem]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML forbids: it has an offset, not a mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = (
            f"invalid YAML: control character U+{exc.character:04X} is not allowed"
            " (write it as an escape such as \\x00 inside double quotes)"
        )
        raise ConfigError([Problem(file, line, column, message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        if _char_at(text, line, column) == "\t":
            message += " (a tab: YAML indents with spaces only)"
        raise ConfigError([Problem(file, line, column, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"invalid YAML: {exc}")]) from None
    if node is None:
        return None, source
    problems: list[Problem] = []
    try:
        _check_expanded_size(node, file)
        data = _Builder(source, problems).build(node, ())
    except _TooBig as exc:
        raise ConfigError([exc.problem]) from None
    if problems:
        raise ConfigError(problems)
    return data, source


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    return lines[line - 1][column - 1 : column] if 0 < line <= len(lines) else ""


def _tag_name(tag: str) -> str:
    return {"timestamp": "date and time", "int": "whole number", "float": "number"}.get(tag.rsplit(":", 1)[-1], tag)


def _position(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _TooBig(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _check_depth(text: str, file: str) -> None:
    """Raise _TooBig at the first collection opened deeper than YAML_MAX_DEPTH, reading the event
    stream (flat, so any depth costs no stack)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > tuning.YAML_MAX_DEPTH:
                line, column = event.start_mark.line + 1, event.start_mark.column + 1
                message = f"invalid YAML: the document is nested deeper than {tuning.YAML_MAX_DEPTH} levels"
                raise _TooBig(Problem(file, line, column, message))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expanded_size(root: yaml.Node, file: str) -> None:
    """Raise _TooBig when the document, with its aliases expanded, holds more than YAML_MAX_VALUES
    values; counted over the node graph (each node once), so a bomb costs no more than its text.
    Points at the innermost node that is too big alone: where the multiplying starts."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    culprit: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in on_path:  # a recursive alias: the builder reports it at its depth limit
            return 1
        on_path.add(id(node))
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [value for _, value in node.value]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        total = 1
        for child in children:
            total += size(child)
        on_path.discard(id(node))
        if total > tuning.YAML_MAX_VALUES and not culprit:
            culprit.append(node)
        sizes[id(node)] = total
        return total

    if size(root) > tuning.YAML_MAX_VALUES:
        line, column = _position(culprit[0])
        message = (
            f"invalid YAML: the document expands to more than {tuning.YAML_MAX_VALUES:,} values (an alias of aliases?)"
        )
        raise _TooBig(Problem(file, line, column, message))


class _Builder:
    """Plain data from a node graph (expanding aliases), no deeper than YAML_MAX_DEPTH."""

    def __init__(self, source: SourceMap, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > tuning.YAML_MAX_DEPTH:
            self._too_big(node, f"is nested deeper than {tuning.YAML_MAX_DEPTH} levels (a recursive alias?)")
        self.source.values[path] = _position(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        try:
            value = self.constructor.construct_object(node)
        except (ValueError, OverflowError, yaml.constructor.ConstructorError) as exc:
            # PyYAML reads 2027-0-01 as a timestamp and fails building it; a 5000-digit number
            # passes Python's limit on int digits
            line, column = _position(node)
            shown = node.value if len(node.value) <= 40 else f"{node.value[:40]}... ({len(node.value)} characters)"
            message = f"{shown!r} cannot be read as a {_tag_name(node.tag)}: {str(exc).split(';')[0]}"
            self.problems.append(Problem(self.source.file, line, column, message))
            return None
        if isinstance(value, float) and not math.isfinite(value):
            line, column = _position(node)
            message = f"{node.value!r} is not a finite number; give a real value"
            self.problems.append(Problem(self.source.file, line, column, message))
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        source, problems = self.source, self.problems
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, column = _position(key_node)
                problems.append(Problem(source.file, line, column, "mapping keys must be plain scalars"))
                continue
            key = self.constructor.construct_object(key_node)
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
            result[key] = self.build(value_node, child)
        return result

    def _too_big(self, node: yaml.Node, message: str) -> None:
        line, column = _position(node)
        raise _TooBig(Problem(self.source.file, line, column, f"invalid YAML: the document {message}"))
