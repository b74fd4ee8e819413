"""Prompt files are checked at load: a row too long for the cache is named by file and line."""

import json

import pytest

from configs import grpo_math_jsonl
from rewardjax.tokenizers import load_tokenizer
from rewardjax.training import rl
from rewardjax.training.prompts import PromptSource, PromptTooLongError

# The tiny preset has 512 positions; the char tokenizer gives one token per character.
LONG = "1+" * 300 + "1="


def _write(path, prompts):
    with open(path, "w") as f:
        for i, p in enumerate(prompts):
            f.write(json.dumps({"prompt": p, "answer": str(i)}) + "\n")
            if i == 0:
                f.write("\n")  # a blank line: line numbers must still be the file's own
    return str(path)


def _source(tmp_path, prompts):
    c = grpo_math_jsonl.get_config("runlocal=True")
    c.task.data_path = _write(tmp_path / "train.jsonl", prompts)
    return PromptSource(c.task, batch_size=2, seed=0)


def test_too_long_row_is_an_error_naming_file_and_line(tmp_path):
    source = _source(tmp_path, ["2+2=", "3+3=", LONG, "4+4="])
    with pytest.raises(PromptTooLongError) as raised:
        source.check_lengths(load_tokenizer("char"), max_new_tokens=32, max_length=512, skip=False)
    # rows: line 1, blank line 2, then lines 3, 4 (the long one), 5
    assert str(raised.value).startswith(f"{tmp_path / 'train.jsonl'}, line 4: prompt of 602 tokens")
    assert "task.skip_long_prompts=True" in str(raised.value)


def test_too_long_rows_can_be_skipped_and_counted(tmp_path):
    source = _source(tmp_path, ["2+2=", LONG, "3+3=", LONG])
    counts = source.check_lengths(
        load_tokenizer("char"), max_new_tokens=32, max_length=512, skip=True
    )
    assert counts == {"skipped_train": 2, "skipped_test": 0}
    seen = {p.prompt for _ in range(4) for p in source.next()}
    assert seen == {"2+2=", "3+3="}


def test_the_rl_trainer_checks_before_training(tmp_path):
    c = grpo_math_jsonl.get_config("runlocal=True,tokenizer=char")
    c.task.data_path = _write(tmp_path / "train.jsonl", ["2+2=", LONG, "3+3=", "4+4="])
    with pytest.raises(PromptTooLongError, match=r"train.jsonl, line 3: prompt of 602 tokens"):
        rl.RLTrainer(c, str(tmp_path / "w"))
