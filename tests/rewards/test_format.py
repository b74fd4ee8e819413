"""rewardjax.rewards.format: tag-structure rewards."""

from rewardjax.rewards import format_pattern, format_think


def run(fn, completions, **kw):
    return fn(["q"] * len(completions), completions, [{}] * len(completions), **kw)


def test_format_think():
    completions = [
        "<think>a</think> 42",
        "  <think>a</think>",
        "<think>a</think><think>b</think> 42",  # two blocks → 0 (mechanisms.md)
        "42 <think>a</think>",
        "<think>a",
        "</think><think>",
    ]
    assert run(format_think, completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_format_think_options():
    assert run(format_think, ["<think>a</think>  ", "<think>a</think> x"], require_answer=True) == [
        0.0,
        1.0,
    ]
    # The template opened the block in the prompt.
    assert run(format_think, ["a</think> x", "<think>a</think> x"], think_in_prompt=True) == [
        1.0,
        0.0,
    ]
    assert run(format_think, ["<r>x</r>y"], open_tag="<r>", close_tag="</r>") == [1.0]


def test_format_pattern():
    completions = [
        "<think>x</think>\n<answer>4</answer>",
        "<think>x</think> junk <answer>4</answer>",
        "<answer>4</answer>",
        "pre <think>x</think><answer>4</answer>",
    ]
    assert run(format_pattern, completions) == [1.0, 0.0, 0.0, 0.0]
    assert run(format_pattern, completions, full_match=False) == [1.0, 0.0, 0.0, 1.0]
    assert run(format_pattern, ["Answer: 12"], pattern=r"Answer: \d+") == [1.0]
