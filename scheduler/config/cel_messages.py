"""celpy's evaluation errors in words (pure text).

celpy reports an error as a tuple of its message, the Python exception class and that
exception's arguments, with class names such as ``<class 'celpy.celtypes.IntType'>``; an
upstream run's `when:` failing deserves a sentence instead: which part of the expression, and
what went wrong in CEL's own terms (int, double, string, null...).
"""

from __future__ import annotations

import re
from typing import Any

_OPERATORS = {
    "relation_lt": "<", "relation_le": "<=", "relation_gt": ">", "relation_ge": ">=", "relation_eq": "==",
    "relation_ne": "!=", "relation_in": "in", "addition_add": "+", "addition_sub": "-", "multiplication_mul": "*",
    "multiplication_div": "/", "multiplication_mod": "%", "unary_neg": "-", "unary_not": "!",
}  # fmt: skip
_OVERLOAD = re.compile(r"found no matching overload for Token\('RULE', '(\w+)'\) applied to '\((.*)\)'")
_CLASS = re.compile(r"<class '([\w.]+)'>")
_CELPY_WORDS = {
    "return error for overflow": "cannot convert the value",
    "no such overload": "does not apply to this value",
}
_SELECTION = re.compile(r".* with type: '<class '([\w.]+)'>' does not support field selection")
NUMBER_HINT = "CEL does not mix int and double: write 0.2 or 1.0 (a double), or convert with double(x)"


def explain(error: Any, text: str) -> str:
    """A CELEvalError (celpy keeps a tuple of message, exception class and its arguments) in words."""
    args = error.args
    message = str(args[0]) if args else "evaluation failed"
    snippet = _snippet(error, text)
    where = f"{snippet}: " if snippet else ""
    if message.startswith("no such member in mapping"):
        key = message.rsplit(":", 1)[-1].strip()
        return f"{where}no key {key} (test for it first with has(...))"
    if message.startswith("undeclared reference"):
        name = args[2][0] if len(args) > 2 and args[2] else "?"
        return f"{where}unknown name {name!r}"
    overload = _OVERLOAD.match(message)
    if overload:
        operator = _OPERATORS.get(overload[1], overload[1])
        types = [cel_type(name.rsplit(".", 1)[-1]) for name in _CLASS.findall(overload[2])]
        found = f"'{operator}' cannot be applied to {' and '.join(types)}" if types else f"'{operator}' does not apply"
        return f"{where}{found}" + (f"; {NUMBER_HINT}" if {"int", "double"} <= set(types) else "")
    if "divide by zero" in message:
        return f"{where}division by zero"
    selection = _SELECTION.match(message)
    if selection:
        return f"{where}{_article(cel_type(selection[1].rsplit('.', 1)[-1]))} has no fields"
    detail = f" ({args[2][0]})" if len(args) > 2 and isinstance(args[2], tuple) and args[2] else ""
    message = _CELPY_WORDS.get(message, message)
    return words(f"{where}{message}{detail}")


def words(text: str) -> str:
    """celpy's and Python's class names in a message as CEL's type names."""
    text = _CLASS.sub(lambda found: cel_type(found[1].rsplit(".", 1)[-1]), text)
    return _TYPE_NAME.sub(lambda found: cel_type(found[0]), text)


def _article(kind: str) -> str:
    return kind if kind == "null" else f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _snippet(error: Any, text: str) -> str:
    """The part of the expression the error is about, when celpy says which."""
    tree = getattr(error, "tree", None)
    meta = getattr(tree, "meta", None)
    start, end = getattr(meta, "start_pos", None), getattr(meta, "end_pos", None)
    if start is not None and end is not None:
        return " ".join(text[start:end].split())
    token = getattr(error, "token", None)
    return str(token) if token is not None else ""


_TYPE_WORDS = {
    "IntType": "int", "DoubleType": "double", "StringType": "string", "BoolType": "bool", "NoneType": "null",
    "ListType": "list", "MapType": "map", "UintType": "uint", "BytesType": "bytes", "TimestampType": "timestamp",
    "DurationType": "duration", "set": "set (not JSON)",
}  # fmt: skip


_TYPE_NAME = re.compile(r"\b(?:" + "|".join(name for name in _TYPE_WORDS if name.endswith("Type")) + r")\b")


def cel_type(class_name: str) -> str:
    return _TYPE_WORDS.get(class_name, class_name)


def shown(value: Any) -> str:
    try:
        text = repr(_plain(value))
    except RecursionError:
        return "(a deeply nested value)"
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any) -> Any:
    """A CEL value as the plain Python value it wraps (for messages)."""
    if type(value).__name__ == "BoolType" or isinstance(value, bool):
        return bool(value)
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value
