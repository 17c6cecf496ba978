"""`when:` conditions: CEL over the upstream run, checked at load, bounded, with readable errors."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scheduler.config.cel_messages import NUMBER_HINT
from scheduler.config.conditions import (
    MAX_DEPTH,
    MAX_LENGTH,
    UPSTREAM_FIELDS,
    ConditionError,
    compile_condition,
)
from tests.harness import REPO


def view(**changes: Any) -> dict[str, Any]:
    """An upstream run as the daemon gives it, with `changes`."""
    base: dict[str, Any] = {
        "status": "completed",
        "job": None,
        "pipeline": "drift_pipeline",
        "run_key": None,
        "zenml_run_id": "0b6a2c3e-1111-4a4a-9c9c-000000000001",
        "zenml_run_name": "drift_pipeline-2026_03_01-12_00_00",
        "parameters": {"data_url": "data/train.csv", "limit": 10},
        "metadata": {"drift_score": 0.31, "rows": 1200, "note": None, "tags": ["nightly", "eu"],
                     "nested": {"a": {"b": [1, {"c": None}]}}, "odd key": 1.5},
        "steps": {"train": {"metadata": {"loss": 0.12}}, "evaluate": {"metadata": {"loss": 0.4, "accuracy": 0.9}}},
        "artifacts": {"train": {"model": "5c1a-artifact"}},
        "duration_s": 42.5,
        "finished_at": "2026-03-01T12:00:42+00:00",
    }  # fmt: skip
    return {**base, **changes}


@pytest.mark.parametrize(
    ("text", "changes", "expected"),
    [
        ("metadata.drift_score > 0.2", {}, True),
        ("metadata.drift_score > 0.5", {}, False),
        ("metadata.rows >= 1000 && metadata.drift_score > 0.2", {}, True),
        ("metadata.rows > 1000.0", {"metadata": {"rows": 1200.0}}, True),
        ("double(metadata.rows) > 1000.0", {}, True),
        ("status == 'completed'", {}, True),
        ("status in ['completed', 'cached']", {"status": "cached"}, True),
        ("job == null", {}, True),
        ("job == 'drift-check'", {"job": "drift-check"}, True),
        ("metadata.note == null", {}, True),
        ("metadata.nested.a.b[1].c == null", {}, True),
        ("metadata['odd key'] > 1.0", {}, True),
        ("'eu' in metadata.tags", {}, True),
        ("size(metadata.tags) == 2", {}, True),
        ("has(metadata.drift_score)", {}, True),
        ("has(metadata.missing)", {}, False),
        ("has(metadata.missing) && metadata.missing > 1", {}, False),  # short-circuit keeps it an answer
        ("!has(metadata.missing) || metadata.missing > 1", {}, True),
        ("parameters.data_url.startsWith('data/')", {}, True),
        ("parameters.limit == 10", {}, True),
        ("duration_s < 60.0", {}, True),
        ("duration_s == null", {"duration_s": None}, True),
        ("timestamp(finished_at) > timestamp('2026-01-01T00:00:00Z')", {}, True),
        ("steps.train.metadata.loss < 0.2", {}, True),
        ("artifacts.train.model != ''", {}, True),
        ("metadata.drift_score > 0.2 ? true : false", {}, True),
        # macros bind their variables
        ("steps.all(s, steps[s].metadata.loss < 0.5)", {}, True),
        ("steps.exists(s, steps[s].metadata.loss > 0.3)", {}, True),
        ("steps.exists_one(s, has(steps[s].metadata.accuracy))", {}, True),
        ("metadata.tags.map(t, size(t)).all(n, n >= 2)", {}, True),
        ("size(metadata.tags.filter(t, t.startsWith('n'))) == 1", {}, True),
        ("metadata.tags.all(t, metadata.tags.exists(u, u == t))", {}, True),
        ("[1, 2].all(status, status > 0)", {}, True),  # a macro variable may shadow a field inside the macro
        ("metadata.tags.exists(t, t == 'eu') && status == 'completed'", {}, True),
    ],
)
def test_evaluate(text: str, changes: dict[str, Any], expected: bool) -> None:
    assert compile_condition(text).evaluate(view(**changes)) is expected


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        ("metadata.missing > 0.2", {}, "metadata.missing: no key 'missing' (test for it first with has(...))"),
        ("steps.deploy.metadata.ok", {}, "steps.deploy: no key 'deploy'"),
        ("metadata.rows > 0.2", {}, f"metadata.rows > 0.2: '>' cannot be applied to int and double; {NUMBER_HINT}"),
        ("metadata.drift_score == 1", {}, NUMBER_HINT),
        ("metadata.note > 1", {}, "metadata.note > 1: '>' cannot be applied to null and int"),
        ("parameters.data_url + 1 == ''", {}, "'+' cannot be applied to string and int"),
        ("metadata.rows / 0 == 1", {}, "metadata.rows / 0: division by zero"),
        ("metadata.rows", {}, "the condition gave int 1200, not true or false"),
        ("metadata.tags", {}, "the condition gave list ['nightly', 'eu'], not true or false"),
        ("metadata.drift_score > 0.2", {"metadata": {"drift_score": {1, 2}}}, "cannot be read as CEL values"),
        ("metadata.drift_score > 0.2", {"metadata": None}, "metadata.drift_score"),
    ],
)
def test_evaluation_errors_are_condition_errors_in_words(text: str, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(text).evaluate(view(**changes))
    assert message in info.value.message
    assert "Token(" not in info.value.message and "<class" not in info.value.message


FIELDS = ", ".join(UPSTREAM_FIELDS)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("metadata.drift_score >", "the condition ends too soon", 23),
        ("metadata.drift_score > > 0.2", "syntax error: unexpected '>'", 24),
        ("metadata.drift_score = 0.2", "syntax error: unexpected character '='", 22),
        ("metadata.drift_score > 0.2)", "syntax error: unexpected ')'", 27),
        ("drift_score > 0.2", f"unknown name 'drift_score'; the upstream run has {FIELDS}", 1),
        ("metdata.drift_score > 0.2", "unknown name 'metdata'; did you mean metadata?", 1),
        ("status == 'x' || stat == 'y'", "unknown name 'stat'; did you mean status?", 18),
        ("[1].all(x, x > 0) && x > 0", "unknown name 'x'", 22),
        ("steps.map(s, t)", "unknown name 't'", 14),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("metadata.tags.sizee() > 1", "unknown function 'sizee'; did you mean size()?", 15),
        ("metadata.tags.all(1, true)", ".all() takes a variable first: list.all(x, <expression of x>)", 15),
        ("metadata.tags.map(t)", ".map() takes a variable first", 15),
        ("(" * 20 + "true" + ")" * 20, f"the condition nests more than {MAX_DEPTH} levels deep", None),
        ("metadata" + ".a" * 80 + " == 1", f"the condition nests more than {MAX_DEPTH} levels deep", None),
        ("x" * (MAX_LENGTH + 1), f"the condition is {MAX_LENGTH + 1} characters long; at most {MAX_LENGTH}", None),
    ],
)
def test_compile_errors_name_their_column(text: str, message: str, column: int | None) -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition(text)
    assert message in info.value.message
    if column is not None:
        assert info.value.column == column
        assert info.value.where == f"column {column} of the expression"


def test_a_compile_error_on_a_later_line_names_the_line() -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition("metadata.drift_score > 0.2 &&\n  bogus")
    assert (info.value.line, info.value.column) == (2, 3)
    assert info.value.where == "line 2, column 3 of the expression"


def test_the_longest_expression_compiles() -> None:
    text = " || ".join(["metadata.drift_score > 0.2"] * 40)[:MAX_LENGTH]
    text = text[: text.rfind(" ||")]
    assert compile_condition(text).evaluate(view())


@pytest.mark.parametrize(
    ("text", "reads"),
    [
        ("metadata.drift_score > 0.2", {"metadata.drift_score": 0.31}),
        ("metadata.missing > 0.2 || true", {"metadata.missing": None}),
        ("status == 'completed' && duration_s < 60.0", {"status": "completed", "duration_s": 42.5}),
        ("metadata.nested.a.b[1].c == null", {"metadata.nested.a.b[1].c": None}),
        ("metadata['odd key'] > 1.0", {"metadata['odd key']": 1.5}),
        ("metadata.drift_score > 0.2 && metadata['drift_score'] < 1.0", {"metadata.drift_score": 0.31}),
        ("has(steps.train.metadata.loss)", {"steps.train.metadata.loss": 0.12}),
        ("metadata.tags.exists(t, t == 'eu')", {"metadata.tags": ["nightly", "eu"]}),
        ("metadata.tags[1] == 'eu'", {"metadata.tags[1]": "eu"}),
        ("metadata.tags[5] == 'eu'", {"metadata.tags[5]": None}),
        ("[1].all(x, x > 0)", {}),
    ],
)
def test_reads_are_the_paths_the_expression_reads(text: str, reads: dict[str, Any]) -> None:
    assert compile_condition(text).reads(view()) == reads


def test_fields_are_the_upstream_fields_read() -> None:
    condition = compile_condition("status == 'completed' && steps.all(s, steps[s].metadata.loss < 0.5)")
    assert condition.fields == {"status", "steps"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # exponential: 20**4 inner evaluations
            "metadata.l.map(a, metadata.l.map(b, metadata.l.map(c, metadata.l.map(d, a + b + c + d))))[0][0][0][0]"
            " == 0",
            "the condition took more than 50,000 evaluation steps",
        ),
        (  # each level makes the string ten times longer
            "size(" + "[" * 7 + "metadata.s" + "].map(a, a+a+a+a+a+a+a+a+a+a)[0]" * 7 + ") > 0",
            "the condition built a value of more than 10,000,000 characters or elements",
        ),
    ],
)
def test_evaluation_is_bounded(text: str, message: str) -> None:
    condition = compile_condition(text)
    started = time.monotonic()
    with pytest.raises(ConditionError, match=message):
        condition.evaluate(view(metadata={"l": list(range(20)), "s": "abcdefghij"}))
    assert time.monotonic() - started < 5


DEEPEST = {  # each shape at the most nesting compile allows (checked below), and the answer
    "parentheses": ("(" * 14 + "true" + ")" * 14, True),
    "negations": ("-" * 139 + "1 == -1", True),
    "nots": ("!" * 138 + "true == true", True),
    "lists": ("[" * 13 + "]" * 13 + " != []", True),
    "maps": ("{'a': " * 12 + "1" + "}" * 12 + " != {}", True),
    "macros": ("".join(f"[1].all(x{i}, " for i in range(15)) + "true" + ")" * 15, True),
    "chain": ("metadata" + ".a" * 70 + " == 1", False),
}


@pytest.mark.parametrize("shape", sorted(DEEPEST))
def test_the_deepest_expressions_evaluate_even_from_a_deep_stack(shape: str) -> None:
    """Evaluation recurses per level: at MAX_DEPTH it must still leave the caller room."""
    text, expected = DEEPEST[shape]
    deeper = {
        "parentheses": "(" * 15 + "true" + ")" * 15, "negations": "-" * 140 + "1 == 1",
        "nots": "!" * 140 + "true == true", "lists": "[" * 14 + "]" * 14 + " != []",
        "maps": "{'a': " * 13 + "1" + "}" * 13 + " != {}",
        "macros": "".join(f"[1].all(x{i}, " for i in range(16)) + "true" + ")" * 16,
        "chain": "metadata" + ".a" * 71 + " == 1",
    }[shape]  # fmt: skip
    with pytest.raises(ConditionError, match="nests more than"):
        compile_condition(deeper)
    condition = compile_condition(text)

    def nested(frames: int) -> bool:
        return nested(frames - 1) if frames else condition.evaluate(view(metadata={"a": {"a": 1}}))

    if expected:
        assert nested(500) is True
    else:  # the path is missing: an answer in words, not a RecursionError
        with pytest.raises(ConditionError, match=r"metadata\.a\.a\.a: an int has no fields"):
            nested(500)


def test_compiling_is_cached_by_text() -> None:
    assert compile_condition("status == 'failed'") is compile_condition("status == 'failed'")


def _loaded_modules(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    return set(result.stdout.split())


def test_celpy_is_imported_only_for_a_config_with_a_condition(tmp_path: Path) -> None:
    """celpy and lark cost the daemon ~200 ms at start: a config without `when:` never loads them."""
    plain = tmp_path / "plain.yaml"
    plain.write_text("version: 1\njobs:\n  a: {pipeline: x.y:z, every: 1m}\n  b: {pipeline: x.y:z, after: {job: a}}\n")
    conditioned = tmp_path / "when.yaml"
    conditioned.write_text(plain.read_text().replace("{job: a}", "{job: a, when: \"status == 'succeeded'\"}"))
    load = "from scheduler.config.loader import load_config\nimport scheduler.policy.after_rules\n"
    without = _loaded_modules(load + f"load_config({str(plain)!r}).jobs['b'].needs_upstream_details")
    assert not {"celpy", "lark"} & without
    assert {"celpy", "lark"} <= _loaded_modules(load + f"load_config({str(conditioned)!r})")
