"""Token arrays for offline training: layout, EOS, step-end positions."""

import numpy as np
import pytest

from rewardjax.data.tokenize import encode_completions, encode_steps
from rewardjax.tokenizers import CharTokenizer

TOK = CharTokenizer()


def c(ch):
    return TOK.encode(ch)[0]


def test_encode_completions_layout():
    out = encode_completions(TOK, ["ab", "c"], ["x", "yz"], max_prompt_len=3, max_completion_len=4)
    # Prompts left-padded with <pad>=0; completions right-padded with EOS=2 appended.
    np.testing.assert_array_equal(out["prompt_tokens"], [[0, c("a"), c("b")], [0, 0, c("c")]])
    np.testing.assert_array_equal(out["prompt_mask"], [[0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(out["tokens"], [[c("x"), 2, 0, 0], [c("y"), c("z"), 2, 0]])
    np.testing.assert_array_equal(out["mask"], [[1, 1, 0, 0], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="row 1: completion has 3 tokens, more than 2"):
        encode_completions(TOK, ["a", "b"], ["x", "yz"], max_prompt_len=2, max_completion_len=2)
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        encode_completions(TOK, ["a", "b"], ["x"], max_prompt_len=2, max_completion_len=2)


def test_encode_steps_positions():
    # Steps "1+1=2" (5 chars) + "\n" -> indices 0..5, end at the newline (5);
    # "A: 2" (4 chars) + EOS -> indices 6..10, end at the EOS (10).
    out = encode_steps(
        TOK, ["Q: 1+1\n"], [["1+1=2", "A: 2"]], max_prompt_len=8, max_completion_len=12, max_steps=3
    )
    np.testing.assert_array_equal(out["step_end"], [[5, 10, 0]])
    np.testing.assert_array_equal(out["step_mask"], [[1, 1, 0]])
    assert TOK.decode(out["tokens"][0, :10]) == "1+1=2\nA: 2"
    assert out["tokens"][0, 5] == c("\n") and out["tokens"][0, 10] == TOK.eos_id
    assert out["mask"][0].sum() == 11
    # Same tokens as encoding the joined text.
    joined = encode_completions(
        TOK, ["Q: 1+1\n"], ["1+1=2\nA: 2"], max_prompt_len=8, max_completion_len=12
    )
    np.testing.assert_array_equal(out["tokens"], joined["tokens"])
    with pytest.raises(ValueError, match="row 0: 2 steps, more than max_steps=1"):
        encode_steps(TOK, ["p"], [["a", "b"]], max_prompt_len=2, max_completion_len=8, max_steps=1)
    with pytest.raises(ValueError, match="row 0: steps must be a non-empty list"):
        encode_steps(TOK, ["p"], [[]], max_prompt_len=2, max_completion_len=8, max_steps=1)
