"""Every command block of docs/recipes.md, run as written against a tiny Qwen2 checkpoint.

The checkpoint is a random 2-layer Qwen2 saved by `transformers`, with a
byte-level BPE tokenizer trained here and a Qwen-style chat template; the
datasets are the published-schema fixtures of tests/data/fixtures/published,
laid out under the file names the recipes use (Parquet and JSON where the
recipe reads those). Only `$MODEL`, `$DATA`, `$WORK` and the interpreter differ
from the document, and each command gets size settings appended (`SMOKE`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "data", "fixtures", "published")
RECIPES = os.path.join(ROOT, "docs", "recipes.md")

# Qwen2.5's template without tool calls: a default system turn, then the messages.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Size settings appended to each command: one update on a couple of rows.
SMOKE_RL = [
    "--config.steps=1",
    "--config.rollout.prompts_per_step=2",
    "--config.rollout.group_size=2",
    "--config.rollout.max_new_tokens=8",
    "--config.eval.every=1",
    "--config.eval.num_problems=2",
    "--config.eval.num_samples=1",
    "--config.eval.batch_prompts=2",
    "--config.eval.max_new_tokens=8",
    "--config.microbatches=1",
    "--config.checkpoint.every=0",
    "--config.checkpoint.async_save=False",
]
SMOKE_OFFLINE = [
    "--config.steps=1",
    "--config.batch_size=2",
    "--config.optim.total_steps=1",
    "--config.optim.warmup_steps=0",
    "--config.eval.num_records=2",
    "--config.microbatches=1",
    "--config.checkpoint.every=0",
    "--config.checkpoint.async_save=False",
]
SMOKE_EVALUATE = ["--num_problems=2", "--max_n=2", "--max_new_tokens=8", "--batch_size=4"]

# recipe file → fixture (the published schema), and how the file is written.
DATA = {
    "gsm8k/train.jsonl": "gsm8k",
    "gsm8k/test.jsonl": "gsm8k",
    "math/train.jsonl": "math",
    "math500/test.jsonl": "math500",
    "mbpp/train.jsonl": "mbpp",
    "mbpp/test.jsonl": "mbpp",
    "ultrafeedback_binarized/train_prefs.parquet": "ultrafeedback_binarized",
    "ultrafeedback_binarized/test_prefs.parquet": "ultrafeedback_binarized",
    "reward-bench/filtered.parquet": "rewardbench",
    "math-shepherd/math-shepherd.jsonl": "math_shepherd",
    "processbench/gsm8k.json": "processbench",
    "processbench/math.json": "processbench",
}


def recipe_blocks() -> dict[str, list[str]]:
    """{recipe name: its commands, continuation lines joined} from docs/recipes.md."""
    text = open(RECIPES, encoding="utf-8").read()
    out = {}
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines = block.replace("\\\n", " ").splitlines()
        if lines and lines[0].startswith("# recipe: "):
            out[lines[0][len("# recipe: ") :].strip()] = [ln for ln in lines[1:] if ln.strip()]
    return out


def _rows(name):
    with open(os.path.join(FIXTURES, f"{name}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_data(root):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for relative, fixture in DATA.items():
        path = os.path.join(root, relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if path.endswith(".parquet"):
            pq.write_table(pa.Table.from_pylist(_rows(fixture)), path)
        elif path.endswith(".json"):
            with open(path, "w", encoding="utf-8") as f:
                json.dump(_rows(fixture), f)
        else:
            shutil.copy(os.path.join(FIXTURES, f"{fixture}.jsonl"), path)


def _write_checkpoint(path):
    """A random 2-layer Qwen2 with a chat-templated byte-level BPE tokenizer."""
    import torch
    import transformers

    from tests.test_tokenizers import _bpe_dir

    corpus = [json.dumps(row) for name in set(DATA.values()) for row in _rows(name)]
    _, tok = _bpe_dir(Path(path), config=False, corpus=corpus * 4, vocab_size=512)
    pad, im_end = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=im_end,
        pad_token_id=pad,
    )
    transformers.Qwen2ForCausalLM(config).save_pretrained(path)
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "add_bos_token": False,
                "chat_template": QWEN_TEMPLATE,
            },
            f,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    model, data = str(root / "model"), str(root / "data")
    _write_checkpoint(model)
    _write_data(data)
    return model, data


def _run(command: str, env: dict[str, str]) -> None:
    assert command.startswith("python -m "), command
    smoke = SMOKE_EVALUATE
    if "experiments.train" in command:
        smoke = SMOKE_RL if re.search(r"recipe=(grpo|drgrpo)", command) else SMOKE_OFFLINE
        if re.search(r"recipe=(dpo|rm|prm)_", command):
            smoke = [*smoke, "--config.eval.every=1"]
    line = f"{sys.executable} {command[len('python ') :]} {' '.join(smoke)}"
    result = subprocess.run(
        ["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{command}\n{result.stderr[-4000:]}"


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_every_recipe_block_is_tested():
    assert sorted(recipe_blocks()) == sorted(
        [
            "grpo_gsm8k",
            "drgrpo_math",
            "grpo_mbpp",
            "dpo_ultrafeedback",
            "rm_ultrafeedback",
            "prm_math_shepherd",
        ]
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(recipe_blocks()))
def test_recipe_runs_as_written(name, setup, tmp_path):
    model, data = setup
    work = str(tmp_path / "work")
    env = dict(os.environ, MODEL=model, DATA=data, WORK=work, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for command in recipe_blocks()[name]:
        _run(command, env)
    run = os.path.join(work, name)
    # The export is a checkpoint that carries its tokenizer and chat template.
    hf = os.path.join(run, "hf")
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(hf))
    last = _metrics(run)[-1]
    assert last["step"] == 1
    if name.startswith(("grpo", "drgrpo")):
        assert "eval/pass@1" in last
    if name == "grpo_gsm8k":
        out = json.load(open(os.path.join(run, "pass_at_k.json")))
        assert 0.0 <= out["table"]["policy"]["pass@1"] <= 1.0
    if name == "dpo_ultrafeedback":
        # Held out on the test file's pairs, with no procedural-task pass@k.
        assert "eval/pairs/reward_accuracy" in last and "eval/pass@1" not in last
    if name == "rm_ultrafeedback":
        out = json.load(open(os.path.join(run, "rewardbench.json")))
        bench = out["benchmarks"]["rewardbench"]["orm"]
        # The fixture's two pairs: one Chat, one Reasoning subset.
        assert set(bench["subsets"]) == {"alpacaeval-easy", "hep-python"}
        assert set(bench["sections"]) == {"Chat", "Reasoning"}
        assert out["table"]["orm"]["rewardbench_score"] == pytest.approx(bench["score"])
        assert any(k.startswith("eval/") for k in last)
    if name == "prm_math_shepherd":
        out = json.load(open(os.path.join(run, "processbench.json")))
        bench = out["benchmarks"]["processbench"]["prm"]
        assert set(bench["subsets"]) == {"gsm8k", "math"}
        assert bench["subsets"]["gsm8k"]["n"] == len(_rows("processbench"))
        assert any(k.startswith("eval/") for k in last)


@pytest.mark.slow
def test_sft_on_conversations_puts_the_loss_on_assistant_turns(setup, tmp_path):
    from rewardjax.tokenizers import load_tokenizer

    model, _ = setup
    replies = ["Hello.", "It is 4.", "Paris."]
    conversations = [
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": replies[0]},
                {"role": "user", "content": "what is 2+2?"},
                {"role": "assistant", "content": replies[1]},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Answer in one word."},
                {"role": "user", "content": "Capital of France?"},
                {"role": "assistant", "content": replies[2]},
            ]
        },
    ]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in conversations))
    work = str(tmp_path / "sft")
    command = [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config=configs/sft_arithmetic.py:model_path={model},train_path={data}",
        "--config.model.tokenizer=",
        "--config.prompt.chat_template=True",
        "--config.steps=1",
        "--config.batch_size=3",
        "--config.log.every=1",
        "--config.optim.total_steps=1",
        "--config.optim.warmup_steps=0",
        "--config.checkpoint.every=0",
        "--config.checkpoint.async_save=False",
        f"--workdir={work}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    # One batch of the three assistant turns: the loss counts their tokens and
    # one end-of-turn token each, nothing of the user or system turns.
    tok = load_tokenizer(model)
    expected = sum(len(tok.encode(r)) + 1 for r in replies)
    assert _metrics(work)[-1]["data/tokens"] == expected
