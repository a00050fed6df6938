"""The condition language of routing rules: what it accepts, what it refuses (with a
message that says why), and that it evaluates like Python would on the same values,
without ever calling eval."""

from __future__ import annotations

import builtins

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abplatform.core.expressions import (
    Argument,
    EvaluationError,
    ExpressionError,
    compile_condition,
)

ARGS = {
    "width": Argument("width", "number", 512),
    "height": Argument("height", "number", 512),
    "lora": Argument("lora", "string"),
    "hd": Argument("hd", "boolean", False),
}


@pytest.mark.parametrize(
    ("text", "arguments", "expected"),
    [
        ("width * height <= 1048576", {"width": 1024, "height": 1024}, True),
        ("width * height <= 1048576", {"width": 2048, "height": 1024}, False),
        ("width * height <= 1048576", {}, True),  # defaults 512 x 512
        ("0 < width <= 512 and not hd", {"width": 300}, True),
        ("0 < width <= 512 and not hd", {"width": 300, "hd": True}, False),
        ('lora in ["anime", "ink"]', {"lora": "ink"}, True),
        ('lora not in ["anime", "ink"]', {"lora": "ink"}, False),
        ('"ani" in lora', {"lora": "anime-v2"}, True),
        ('lower(lora) == "anime"', {"lora": "ANIME"}, True),
        ("len(lora) > 3 or hd == true", {"lora": "ab"}, False),
        ("max(width, height) >= 1024", {"width": 100, "height": 1500}, True),
        ("abs(width - height) // 2 % 7 == 4", {"width": 10, "height": 2}, True),
        ("width / height > 1.5", {"width": 1600, "height": 900}, True),
        ("-width < 0", {}, True),
        ("true", {}, True),
    ],
)
def test_conditions_evaluate_on_the_request_arguments(
    text: str, arguments: dict, expected: bool
) -> None:
    assert compile_condition(text, ARGS).evaluate(arguments) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("widht > 3", "unknown argument 'widht' (declared arguments: width, height, lora, hd)"),
        ("width * * height", "is not valid: invalid syntax"),
        ("width +", "is not valid"),
        ("width", "is a number; it must be true or false"),
        ('width > "3"', "cannot compare number > string"),
        ("lora * 2 > 1", "'*' needs numbers, got string and number at column 6"),
        ("hd < true", "booleans compare only with == and !="),
        ("__import__('os').system('true')", "unknown function"),
        ("width.real > 1", "attribute is not allowed"),
        ("width ** 2 > 1", "operator not allowed at column 7"),
        ("width / 0 > 1", "divides by the constant 0 at column 7"),
        ("(width + 1) % 0 > 1", "divides by the constant 0 at column 13"),
        ("[x for x in [1]]", "listcomp is not allowed"),
        ("(lambda: 1)() == 1", "unknown function"),
        ("lora in [1, 2]", "'in' needs a string and a list of strings"),
        ("width in [1, 'a']", "a list must hold literals of one type"),
        ("width in [height]", "a list may hold only literals"),
        ("", "must not be empty"),
        ("x" * 501, "at most 500 characters"),
        ("len(width) > 1", "len() takes one string"),
        ("min(width) > 1", "min() takes two or more numbers"),
    ],
)
def test_bad_conditions_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_condition(text, ARGS)
    assert message in str(info.value)


def test_a_condition_is_never_evaluated_by_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("eval/exec/compile called")

    cond = compile_condition('width * height <= 1048576 and lora in ["a"]', ARGS)
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert cond.evaluate({"lora": "a"}) is True
    assert cond.reads == ("height", "lora", "width")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"width": "wide"}, "argument 'width' must be a number, got 'wide'"),
        ({"width": True}, "argument 'width' must be a number, got True"),
        ({}, "argument 'lora' is required (no default is declared)"),
    ],
)
def test_arguments_of_the_wrong_type_or_missing_give_an_evaluation_error(
    arguments: dict, message: str
) -> None:
    cond = compile_condition('width > 10 and lora == "a"', ARGS)
    with pytest.raises(EvaluationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cond.evaluate({"lora": None, **arguments} if "lora" not in arguments else arguments)


def test_division_by_zero_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError, match="divides by zero"):
        compile_condition("width / height > 1", ARGS).evaluate({"height": 0})


@given(
    w=st.integers(min_value=-(10**6), max_value=10**6),
    h=st.integers(min_value=-(10**6), max_value=10**6),
    limit=st.integers(min_value=0, max_value=10**12),
)
def test_arithmetic_and_comparisons_agree_with_python(w: int, h: int, limit: int) -> None:
    text = f"width * height <= {limit} or width - height > 3 and not width % 7 == 0"
    expected = w * h <= limit or (w - h > 3 and w % 7 != 0)
    assert compile_condition(text, ARGS).evaluate({"width": w, "height": h}) is expected
