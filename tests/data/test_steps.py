"""Step text: splitting, checking, locating step ends in policy tokens, reading labels."""

import numpy as np
import pytest

from rewardjax.data.formats import StepLabels
from rewardjax.data.steps import (
    check_steps,
    first_error_label,
    outcome_label,
    policy_step_ends,
    split_steps,
)
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


def _encode(text):
    return [*TOK.encode(text), TOK.eos_id]


def test_policy_step_ends_at_separators_and_eos():
    # "1+2=3\n3+4=7\nA: 7" + EOS: the two "\n" are characters 5 and 11, the EOS is token 16.
    text = "1+2=3\n3+4=7\nA: 7"
    ids = _encode(text)
    tokens = np.zeros((2, 20), np.int32)
    tokens[0, : len(ids)] = ids
    # Row 1: a leading newline is stripped before splitting, so "1+2=3" ends at its own
    # separator (token 6), and the answer line at the EOS (token 11).
    ids1 = _encode("\n1+2=3\nA: 3")
    tokens[1, : len(ids1)] = ids1
    lengths = np.array([len(ids), len(ids1)])
    steps = [split_steps(text), split_steps("\n1+2=3\nA: 3")]
    assert [len(s) for s in steps] == [3, 2]
    step_end, step_mask = policy_step_ends(TOK, tokens, lengths, [3, 2], "\n", 4)
    np.testing.assert_array_equal(step_end, [[5, 11, 16, 0], [6, 11, 0, 0]])
    np.testing.assert_array_equal(step_mask, [[1, 1, 1, 0], [1, 1, 0, 0]])


def test_policy_step_ends_when_later_steps_are_cut_off():
    # Only the first two of three steps are scored: the second ends at its separator (11).
    ids = _encode("1+2=3\n3+4=7\nA: 7")
    tokens = np.array([ids])
    step_end, step_mask = policy_step_ends(TOK, tokens, np.array([len(ids)]), [2], "\n", 2)
    np.testing.assert_array_equal(step_end, [[5, 11]])
    np.testing.assert_array_equal(step_mask, [[1, 1]])


def test_step_with_separator_inside_is_a_missing_split():
    with pytest.raises(ValueError, match=r"row 1: step 0 contains the step separator '\\n'"):
        check_steps([["1+2=3", "A: 3"], ["1+2=3\nA: 3"]], "\n")
    with pytest.raises(ValueError, match="separator is empty"):
        check_steps([["a"]], "")


def test_labels_of_step_labelled_solutions():
    steps = ["1+2=4", "4+4=8", "A: 8"]
    wrong = StepLabels(prompt="Q", steps=steps, labels=[1.0, 0.0, 0.0])
    assert first_error_label(wrong) == 1 and outcome_label(wrong) == 0.0
    right = StepLabels(prompt="Q", steps=steps, labels=[1.0, 1.0, 1.0])
    assert first_error_label(right) == -1 and outcome_label(right) == 1.0
    # An incomplete but correct solution: first_error = S counts as no error.
    cut = StepLabels(prompt="Q", steps=steps, labels=[1.0, 1.0, 1.0], first_error=3)
    assert first_error_label(cut) == -1
