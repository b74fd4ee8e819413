"""Judge templates and strict parsers: malformed replies fail, targets round-trip."""

import math

import numpy as np
import pytest

from rewardjax.data.tasks import make_task
from rewardjax.judges import formats
from rewardjax.judges.formats import (
    FORMATS,
    Verdict,
    parse_pairwise,
    parse_pointwise,
    parse_stepwise,
)
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


@pytest.mark.parametrize(
    "text",
    ["", " \n", "yes", "YES", "Yes.", "Yes No", "Yes\nNo", "No\nYes", "Maybe", "Verdict: Yes"],
)
def test_pointwise_malformed_is_a_failure(text):
    v = parse_pointwise(text)
    assert v.status == "parse_failure" and v.value is None and v.reason


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Verdict: Yes",  # no rationale
        "looks fine",  # missing verdict
        "ok\nVerdict: Yes\nmore text",  # trailing junk
        "ok\nVerdict: Yes\nVerdict: No",  # two verdicts
        "ok Verdict: No\nVerdict: Yes",  # two verdicts, one inline
        "ok\nVerdict: yes",  # wrong word
        "ok\nVerdict: Maybe",
        "ok\nVerdict:",
        "ok\nVerdict: Yes No",
    ],
)
def test_pointwise_rationale_malformed_is_a_failure(text):
    assert parse_pointwise(text, rationale=True).status == "parse_failure"


def test_pointwise_well_formed():
    assert parse_pointwise("Yes\n") == Verdict(status="ok", value="Yes")
    v = parse_pointwise("Step 2 is wrong.\nVerdict: No", rationale=True)
    assert (v.status, v.value, v.rationale) == ("ok", "No", "Step 2 is wrong.")


@pytest.mark.parametrize("text", ["", "a", "C", "A B", "A\nB", "Solution A", "AB"])
def test_pairwise_malformed_is_a_failure(text):
    assert parse_pairwise(text).status == "parse_failure"


@pytest.mark.parametrize(
    "text", ["Verdict: A", "x\nVerdict: C", "x\nVerdict: A\nVerdict: B", "x\nVerdict: B\n."]
)
def test_pairwise_rationale_malformed_is_a_failure(text):
    assert parse_pairwise(text, rationale=True).status == "parse_failure"


@pytest.mark.parametrize(
    "text,kwargs",
    [
        ("", {}),
        ("Step 1: correct\nStep 3: wrong", {}),  # a step skipped
        ("Step 1: correct\nStep 1: wrong", {}),  # a step repeated
        ("Step 2: correct", {}),  # not starting at 1
        ("Step 1: right", {}),  # wrong word
        ("Step 1: Correct", {}),
        ("step 1: correct", {}),  # malformed step line
        ("Step 1 : correct", {}),
        ("Step 1: correct\nfine", {}),  # trailing junk
        ("Step 1: correct wrong", {}),
        ("Step 1: correct\nStep 2: wrong", {"num_steps": 3}),  # too few verdicts
        ("ok\nStep 1: correct", {}),  # a rationale line where none is allowed
    ],
)
def test_stepwise_malformed_is_a_failure(text, kwargs):
    assert parse_stepwise(text, **kwargs).status == "parse_failure"


@pytest.mark.parametrize(
    "text",
    [
        "Step 1: correct",  # no rationale before the step
        "ok\nStep 1: correct\nStep 2: wrong",  # none before step 2
        "ok\nStep 1: correct\nthen more",  # text after the last step
        "ok\nstep 1: correct",
    ],
)
def test_stepwise_rationale_malformed_is_a_failure(text):
    assert parse_stepwise(text, rationale=True).status == "parse_failure"


def test_stepwise_labels_and_first_error():
    v = parse_stepwise("Step 1: correct\nStep 2: wrong\nStep 3: wrong", num_steps=3)
    assert v.ok and v.step_labels == (True, False, False) and v.first_error == 1
    assert v.value == "No"
    v = parse_stepwise("a\nStep 1: correct\nb\nc\nStep 2: correct", rationale=True)
    assert v.step_labels == (True, True) and v.first_error is None and v.value == "Yes"
    assert v.rationale == "a\nb c"


# Targets in every format parse back to the verdict they were built from.
ROUND_TRIPS = {
    "pointwise": [(formats.pointwise_target, True, "Yes"), (formats.pointwise_target, False, "No")],
    "pairwise": [(formats.pairwise_target, True, "A"), (formats.pairwise_target, False, "B")],
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_round_trips_render_target_parse(name):
    fmt = FORMATS[name]
    problem, solution = "Q: 7+5-3\n", "7+5=12\n12-3=9\nA: 9"
    texts = (
        (problem, solution, "7+5=12\n12-3=8\nA: 8")
        if fmt.kind == "pairwise"
        else (problem, solution)
    )
    prompt = fmt.prompt(*texts)
    assert prompt.endswith("\n") and len(TOK.encode(prompt)) < 160  # CharTokenizer encodes it
    if fmt.kind == "stepwise":
        labels = [True, False, False]
        notes = (
            ["7+5=12 is right.", "12-3=8 should be 12-3=9.", "follows."] if fmt.rationale else None
        )
        v = fmt.parse(formats.stepwise_target(labels, rationales=notes), num_steps=3)
        assert v.ok and v.step_labels == (True, False, False) and v.first_error == 1
        return
    for target, flag, word in ROUND_TRIPS[fmt.kind]:
        text = target(flag, rationale="Because." if fmt.rationale else None)
        v = fmt.parse(text)
        assert v.ok and v.value == word, text
        assert text.endswith(word)
        # The other mode's parser rejects it: a format is not read leniently.
        other = FORMATS[fmt.kind if fmt.rationale else f"{fmt.kind}_rationale"]
        assert not other.parse(text).ok
    assert fmt.words[0] in prompt and fmt.words[1] in prompt


def test_templates_use_only_char_vocabulary_and_fit_512_positions():
    task = make_task("arithmetic_chain", num_steps=4, max_operand=99)
    p = task.problem(0)
    wrong = task.demonstration(p, np.random.default_rng(0), error_rate=1.0)
    for fmt in FORMATS.values():
        texts = (p.prompt, p.reference_completion, wrong)[: 3 if fmt.kind == "pairwise" else 2]
        assert len(TOK.encode(fmt.prompt(*texts))) < 400


def test_verdict_words_have_distinct_first_characters():
    for words in (formats.POINTWISE_WORDS, formats.PAIRWISE_WORDS):
        assert words[0][0] != words[1][0] and all(" " not in w for w in words)


def test_on_failure_policies_score_failures_as_told():
    ok_yes, ok_no = parse_pointwise("Yes"), parse_pointwise("No")
    bad = parse_pointwise("yes")
    verdicts = [ok_yes, ok_no, bad]
    s, valid = formats.verdict_scores(verdicts, positive="Yes", on_failure="zero")
    np.testing.assert_array_equal(s, [1.0, 0.0, 0.0])
    assert valid.all()
    s, valid = formats.verdict_scores(verdicts, positive="Yes", on_failure="exclude")
    assert s[:2].tolist() == [1.0, 0.0] and math.isnan(s[2])
    np.testing.assert_array_equal(valid, [True, True, False])
    s, _ = formats.verdict_scores(verdicts, positive="Yes", on_failure=0.5)
    np.testing.assert_array_equal(s, [1.0, 0.0, 0.5])
    assert formats.failure_count(verdicts) == 1
    with pytest.raises(ValueError, match="on_failure"):
        formats.verdict_score(bad, positive="Yes", on_failure="ignore")
