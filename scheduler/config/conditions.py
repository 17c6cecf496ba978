"""The `when:` condition of an after job: a CEL expression over the upstream run (pure).

The upstream run is given as a "view", a plain dict with the keys of UPSTREAM_FIELDS:
status, job (None when not one of ours), pipeline, run_key, zenml_run_id, zenml_run_name,
parameters, metadata (run-level), steps ({step: {"metadata": {...}}}), artifacts
({step: {output: artifact version id}}), duration_s and finished_at (ISO 8601).

CEL (the `cel-python` library) is a language without side effects or loops of its own; the
expression is never given to Python's eval. It is still bounded here, because CEL's macros
nest (`l.map(a, l.map(b, ...))` is exponential in the nesting): an expression is at most
MAX_LENGTH characters and MAX_DEPTH levels deep, and one evaluation takes at most MAX_STEPS
steps and builds no value longer than MAX_VALUE. Names are checked when the file is loaded:
a top-level name that is not a field of the view, or an unknown function, is refused there.

celpy (with lark) costs about 90 ms to import and 120 ms to build its parser, so it is
imported only by the first `compile_condition`: a config without `when:` never loads it.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scheduler.config.cel_messages import cel_type, explain, shown, words

UPSTREAM_FIELDS = (
    "status", "job", "pipeline", "run_key", "zenml_run_id", "zenml_run_name",
    "parameters", "metadata", "steps", "artifacts", "duration_s", "finished_at",
)  # fmt: skip
# Fields that only the ZenML record of the upstream run has (the daemon waits for it).
DETAIL_FIELDS = ("metadata", "steps", "artifacts")

MAX_LENGTH = 1000  # characters in the expression
MAX_DEPTH = 150  # levels of its parse tree: about 14 nested parentheses (evaluation recurses per level)
MAX_STEPS = 50_000  # parse-tree nodes visited in one evaluation (up to about a second on 2 cores)
MAX_VALUE = 10_000_000  # characters of a string, or elements of a list or map, built in one evaluation
_RECURSION_LIMIT = 2500

# Macros bind their first argument(s) as variables in the rest: list.all(x, x > 0).
_MACRO_VARIABLES = {"all": 1, "exists": 1, "exists_one": 1, "map": 1, "filter": 1, "reduce": 2}
# Names that are not upstream fields but stand alone in an expression: CEL's type names.
_TYPE_NAMES = frozenset(
    {"bool", "bytes", "double", "duration", "int", "list", "map", "null_type", "string", "timestamp", "uint", "type"}
)
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")

Path = tuple[str | int, ...]


class ConditionError(ValueError):
    """A condition that does not compile or cannot be evaluated. `column` (1-based, inside the
    expression, on its `line`) is where a compile error is, when known."""

    def __init__(self, message: str, column: int | None = None, line: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.line = line

    @property
    def where(self) -> str:
        """``column 7 of the expression`` (with the line when the expression has several), or ''."""
        if self.column is None:
            return ""
        line = f"line {self.line}, " if self.line > 1 else ""
        return f"{line}column {self.column} of the expression"


@dataclass(frozen=True, eq=False)
class Condition:
    """A compiled `when:` expression; see `compile_condition`."""

    text: str
    tree: Any = field(repr=False)  # celpy's lark parse tree
    # The paths the expression reads from the view (root field first), in order of appearance.
    paths: tuple[Path, ...] = field(repr=False)

    @property
    def fields(self) -> frozenset[str]:
        """The upstream fields the expression reads."""
        return frozenset(str(path[0]) for path in self.paths)

    def evaluate(self, view: dict[str, Any]) -> bool:
        """True or False for this upstream run; ConditionError (with a readable message) for a
        missing key, a type mismatch, a result that is not a bool or an evaluation past its bounds."""
        engine = _engine()
        try:
            values = {name: engine.to_cel(view[name]) for name in UPSTREAM_FIELDS if name in view}
        except (ValueError, TypeError, RecursionError) as exc:
            raise ConditionError(f"the upstream run cannot be read as CEL values: {words(str(exc))}") from None
        try:
            result = engine.evaluate(self.tree, values)
        except engine.eval_error as exc:
            raise ConditionError(explain(exc, self.text)) from None
        except _Bounds as exc:
            raise ConditionError(str(exc)) from None
        except RecursionError:
            raise ConditionError("the condition nests too deeply to evaluate") from None
        except Exception as exc:  # celpy raises more than its own errors on odd input; none may reach the daemon
            raise ConditionError(f"the condition cannot be evaluated: {type(exc).__name__}: {exc}") from None
        if not isinstance(result, bool) and type(result).__name__ != "BoolType":
            raise ConditionError(
                f"the condition gave {cel_type(type(result).__name__)} {shown(result)}, not true or false"
            )
        return bool(result)

    def reads(self, view: dict[str, Any]) -> dict[str, Any]:
        """The dotted paths the expression reads, with their values in `view` (None when absent):
        what the audit trail shows beside the outcome, e.g. ``{"metadata.drift_score": 0.31}``."""
        return {dotted(path): lookup(view, path) for path in self.paths}


def dotted(path: Path) -> str:
    """``metadata.drift_score``, ``metadata["a b"]``, ``metadata.scores[0]``."""
    text = str(path[0])
    for part in path[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


def lookup(value: Any, path: Path) -> Any:
    """The value at `path` in nested dicts and lists, or None where it is absent."""
    for part in path:
        found = isinstance(value, dict) and part in value
        found = found or (isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value))
        if not found:
            return None
        value = value[part]
    return value


@functools.lru_cache(maxsize=256)
def compile_condition(text: str) -> Condition:
    """Parse and check a `when:` expression; ConditionError (with its column) for a syntax error,
    an expression past the bounds, a top-level name that is not in UPSTREAM_FIELDS or an unknown
    function. Cached by text: the loader and `Job.condition` compile each expression once."""
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"the condition is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    engine = _engine()
    tree = engine.parse(text)
    return Condition(text, tree, _check(tree, engine.functions))


# ---- the checks at compile time -------------------------------------------------------------


def _check(tree: Any, functions: frozenset[str]) -> tuple[Path, ...]:
    """Walk the parse tree (iteratively: depth is what is being bounded) and return the paths
    read from the view; raise ConditionError at the first name or function that is not known."""
    paths: dict[Path, None] = {}
    stack: list[tuple[Any, frozenset[str], int]] = [(tree, frozenset(), 1)]
    while stack:
        node, bound, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _at(node, f"the condition nests more than {MAX_DEPTH} levels deep; simplify it")
        below = depth + 1
        kind = node.data
        if kind == "member":
            chain = _chain(node)
            if chain is not None:
                token, parts = chain
                if depth + 2 * len(parts) > MAX_DEPTH:  # each `.key` or `[index]` is two levels
                    raise _at(node, f"the condition nests more than {MAX_DEPTH} levels deep; simplify it")
                if _free_name(token, bound):
                    paths[(str(token), *parts)] = None
                continue
        elif kind in ("ident", "dot_ident"):
            if _free_name(node.children[0], bound):
                paths[(str(node.children[0]),)] = None
            continue
        elif kind in ("ident_arg", "dot_ident_arg"):
            _known_function(node.children[0], functions)
        elif kind == "member_dot_arg":
            target, method, *rest = node.children
            if str(method) in _MACRO_VARIABLES:
                stack.extend(_macro(method, rest[0] if rest else None, bound, below))
                stack.append((target, bound, below))
                continue
            _known_function(method, functions)
        stack.extend((child, bound, below) for child in reversed(node.children) if hasattr(child, "data"))
    return tuple(paths)


def _macro(method: Any, arguments: Any, bound: frozenset[str], depth: int) -> list[tuple[Any, frozenset[str], int]]:
    """The macro's bodies to check, with its variables bound in them."""
    count = _MACRO_VARIABLES[str(method)]
    expressions = list(arguments.children) if arguments is not None else []
    wanted = count + 1 + (1 if str(method) == "reduce" else 0)  # reduce(r, x, initial, step)
    names = [_bare_ident(expression) for expression in expressions[:count]]
    if len(expressions) != wanted or any(name is None for name in names):
        usage = (
            "list.reduce(r, x, initial, r + x)" if str(method) == "reduce" else f"list.{method}(x, <expression of x>)"
        )
        raise _at(method, f".{method}() takes {'two variables' if count == 2 else 'a variable'} first: {usage}")
    inner = bound | {str(name) for name in names}
    bodies = [(expression, inner, depth) for expression in expressions[count:]]
    if str(method) == "reduce":
        bodies[0] = (expressions[count], bound, depth)  # the initial value is outside the loop
    return bodies


def _free_name(token: Any, bound: frozenset[str]) -> bool:
    """Whether `token` names an upstream field (True) or a bound variable or type (False);
    ConditionError for any other name."""
    name = str(token)
    if name in bound or name in _TYPE_NAMES:
        return False
    if name in UPSTREAM_FIELDS:
        return True
    close = difflib.get_close_matches(name, UPSTREAM_FIELDS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise _at(token, f"unknown name {name!r}; {hint}the upstream run has {', '.join(UPSTREAM_FIELDS)}")


def _known_function(token: Any, functions: frozenset[str]) -> None:
    if str(token) not in functions:
        close = difflib.get_close_matches(str(token), sorted(functions), n=1)
        hint = f"; did you mean {close[0]}()?" if close else ""
        raise _at(token, f"unknown function {str(token)!r}{hint}")


def _chain(node: Any) -> tuple[Any, Path] | None:
    """(root identifier token, path below it) when `node` is a plain path such as
    ``metadata.scores[0]["a b"]`` (literal indexes only); None otherwise."""
    parts: list[str | int] = []
    while True:
        kind, children = node.data, node.children
        if kind == "member_dot":
            parts.append(str(children[1]))
            node = children[0]
        elif kind == "member_index":
            index = _literal(children[1])
            if index is None:
                return None
            parts.append(index)
            node = children[0]
        elif kind in ("member", "primary") and len(children) == 1 and hasattr(children[0], "data"):
            node = children[0]
        elif kind == "ident":
            return children[0], tuple(reversed(parts))
        else:
            return None


def _single(node: Any, leaf: str) -> Any:
    """The token under a chain of one-child nodes ending in a `leaf` node, or None."""
    while hasattr(node, "data"):
        if node.data == leaf:
            return node.children[0] if node.children else None
        if len(node.children) != 1:
            return None
        node = node.children[0]
    return None


def _bare_ident(expression: Any) -> Any:
    return _single(expression, "ident")


def _literal(expression: Any) -> str | int | None:
    """A plain string or decimal integer literal (no escapes), else None."""
    token = _single(expression, "literal")
    if token is None:
        return None
    text = str(token)
    if token.type == "INT_LIT" and re.fullmatch(r"-?\d+", text):
        return int(text)
    if token.type == "STRING_LIT" and re.fullmatch(r"'[^'\\]*'|\"[^\"\\]*\"", text):
        return text[1:-1]
    return None


def _at(node: Any, message: str) -> ConditionError:
    """A ConditionError at `node` (a lark token or tree)."""
    meta = getattr(node, "meta", node)
    return ConditionError(message, getattr(meta, "column", None), getattr(meta, "line", None) or 1)


# ---- celpy, imported on first use -------------------------------------------------------------


class _Bounds(Exception):
    """An evaluation past MAX_STEPS or MAX_VALUE."""


@dataclass(frozen=True)
class _Engine:
    parse: Callable[[str], Any]
    evaluate: Callable[[Any, dict[str, Any]], Any]
    to_cel: Callable[[Any], Any]
    eval_error: type[Exception]
    functions: frozenset[str]


@functools.cache
def _engine() -> _Engine:
    """celpy's parser and a step-counting evaluator, built once, on the first condition."""
    import lark
    from celpy import celparser, evaluation
    from celpy.adapter import json_to_cel

    celparser.CELParser()  # builds the lark parser that celpy shares (celparser.CELParser.CEL_PARSER)
    # Evaluation recurses about six frames per level of the parse tree: MAX_DEPTH levels take up
    # to ~900 frames, which Python's default limit of 1000 would leave the caller almost none of.
    # Raised (never lowered) to what celpy.Environment sets itself.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), _RECURSION_LIMIT))

    class Bounded(evaluation.Evaluator):
        """celpy's evaluator, counting the nodes it visits (macros' sub-evaluators share the count)."""

        def __init__(self, ast: Any, activation: Any, budget: list[int]) -> None:
            super().__init__(ast, activation)
            self.budget = budget

        def sub_evaluator(self, ast: Any) -> Bounded:
            return Bounded(ast, self.activation, self.budget)

        def _visit_tree(self, tree: Any) -> Any:  # every visit, children's and macros' too, passes here
            self.budget[0] -= 1
            if self.budget[0] < 0:
                raise _Bounds(f"the condition took more than {MAX_STEPS:,} evaluation steps; simplify it")
            value = super()._visit_tree(tree)
            if isinstance(value, (str, bytes, list, dict)) and len(value) > MAX_VALUE:
                raise _Bounds(f"the condition built a value of more than {MAX_VALUE:,} characters or elements")
            return value

    def parse(text: str) -> Any:
        try:
            return celparser.CELParser.CEL_PARSER.parse(text)  # type: ignore[union-attr]
        except lark.exceptions.UnexpectedInput as exc:
            raise _syntax_error(exc, text) from None

    def evaluate(tree: Any, values: dict[str, Any]) -> Any:
        return Bounded(tree, evaluation.Activation(), [MAX_STEPS]).evaluate(values)

    names = {name for name in evaluation.base_functions if name[:1].isalpha()}
    functions = frozenset(names | {"has", "dyn", "min"})
    return _Engine(parse, evaluate, json_to_cel, evaluation.CELEvalError, functions)


def _syntax_error(exc: Any, text: str) -> ConditionError:
    token = getattr(exc, "token", None)
    if token is not None and token.type == "$END":
        return ConditionError(
            "the condition ends too soon (something is missing at its end)",
            len(text.split("\n")[-1]) + 1,
            text.count("\n") + 1,
        )
    found = f"unexpected {str(token)!r}" if token is not None else f"unexpected character {getattr(exc, 'char', '?')!r}"
    return ConditionError(f"syntax error: {found}", getattr(exc, "column", None), getattr(exc, "line", None) or 1)
