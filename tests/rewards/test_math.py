"""rewardjax.rewards.math: answer extraction and verifiable answer rewards."""

import pytest

from rewardjax.rewards import exact_match, math_verify_equiv, numeric_match
from rewardjax.rewards.math import (
    extract_answer,
    extract_answer_tag,
    extract_boxed,
    extract_last_number,
    normalize_text,
    parse_number,
)


def scores(fn, completions, golds, **kw):
    fields = [{"answer": g} for g in golds]
    return fn(["q"] * len(completions), completions, fields, **kw).scores


def test_extract_boxed_takes_last_and_balances_braces():
    assert extract_boxed(r"a \boxed{1} b \boxed{\frac{1}{2}} c") == r"\frac{1}{2}"
    assert extract_boxed(r"\fbox{x}") == "x"
    assert extract_boxed(r"\boxed{unclosed") is None
    assert extract_boxed("none") is None


def test_extract_answer_tag_and_last_number():
    assert extract_answer_tag("<answer> 4 </answer> x <answer>5</answer>") == "5"
    assert extract_answer_tag("no tag") is None
    assert extract_last_number("cost 1,234.5 then -7 apples") == "-7"
    assert extract_last_number("total 1,234.5") == "1234.5"
    assert extract_last_number("2e3 and .5") == ".5"
    assert extract_last_number("none") is None


def test_extract_answer_modes():
    text = r"think <answer>42</answer> \boxed{7} 9"
    assert extract_answer(text, "auto") == "42"
    assert extract_answer(text, "boxed") == "7"
    assert extract_answer(text, "last_number") == "9"
    assert extract_answer(r"so \boxed{7}", "auto") == "7"
    assert extract_answer(" plain ", "auto") == " plain "
    with pytest.raises(ValueError, match="extract"):
        extract_answer(text, "guess")


def test_normalize_and_parse_number():
    assert normalize_text("  Paris.  ") == "paris"
    assert normalize_text("New   York", lowercase=False) == "New York"
    assert parse_number("1,000") == 1000.0
    assert parse_number("3/4") == 0.75
    assert parse_number("$12$") == 12.0
    assert parse_number("x") is None and parse_number("1/0") is None


def test_math_verify_equiv_catalogue_cases():
    # mechanisms.md: \boxed{\frac{1}{2}} vs gold \frac{1}{2} → 1; \boxed{\frac{1}{3}} → 0.
    got = scores(
        math_verify_equiv,
        [r"so \boxed{\frac{1}{2}}", r"so \boxed{\frac{1}{3}}", r"\boxed{0.5}", "no answer here"],
        [r"\frac{1}{2}"] * 4,
    )
    assert got == [1.0, 0.0, 1.0, 0.0]


def test_math_verify_unparseable_gold_is_none():
    assert scores(math_verify_equiv, [r"\boxed{1}"], ["Paris"]) == [None]
    assert math_verify_equiv(["q"], [r"\boxed{1}"], [{}]).scores == [None]


def test_math_verify_extraction_modes():
    text = r"<answer>\frac{2}{4}</answer> and \boxed{3}"
    assert scores(math_verify_equiv, [text], ["0.5"], extract="answer_tag") == [1.0]
    assert scores(math_verify_equiv, [text], ["3"], extract="boxed") == [1.0]
    assert scores(
        math_verify_equiv, ["the result is 12 then 13"], ["13"], extract="last_number"
    ) == [1.0]
    assert scores(math_verify_equiv, ["no tag"], ["1"], extract="answer_tag") == [0.0]


def test_math_verify_list_of_golds():
    assert scores(math_verify_equiv, [r"\boxed{4}"], [["3", "4"]]) == [1.0]


def test_exact_match():
    # mechanisms.md: " Paris." vs "paris" → 1.
    assert scores(
        exact_match, [" Paris.", "London", "<answer>Rome</answer>"], ["paris", "paris", "rome"]
    ) == [1.0, 0.0, 0.0]
    assert scores(exact_match, ["<answer>Rome</answer>"], ["rome"], extract="answer_tag") == [1.0]
    assert scores(exact_match, ["Paris"], ["paris"], lowercase=False) == [0.0]
    assert scores(exact_match, ["x"], [None]) == [None]
    assert scores(exact_match, ["nothing"], ["x"], extract="boxed") == [0.0]


def test_numeric_match_tolerance():
    completions = [
        "<answer>3.0000001</answer>",
        r"\boxed{3.1}",
        "I get 3/4",
        "<answer>3/4</answer>",
        "none",
    ]
    golds = ["3", "3", "0.75", "0.75", "1"]
    # "I get 3/4": the last number is 4 → wrong; the tag holds the fraction → 0.75.
    assert scores(numeric_match, completions, golds) == [1.0, 0.0, 0.0, 1.0, 0.0]
    # |3.1 − 3| = 0.1 ≤ 0 + 0.05·3 = 0.15 with rtol.
    assert scores(numeric_match, [r"\boxed{3.1}"], ["3"], rtol=0.05) == [1.0]
    assert scores(numeric_match, ["5"], ["five"]) == [None]
