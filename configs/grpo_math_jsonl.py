r"""GRPO on your own prompts (JSONL) with your own model (a local HF directory).

  python -m experiments.train \
      --config configs/grpo_math_jsonl.py:model_path=/models/qwen2.5-0.5b,data_path=train.jsonl,test_path=test.jsonl \
      --workdir /tmp/grpo_math

Each JSONL row has `prompt` and `answer` (plus optional fields passed to the
reward functions); or the files are a published dataset as distributed, read
by `reader` / `test_reader` ("gsm8k", "math", "math500"; rewardjax.data.published):

  --config configs/grpo_math_jsonl.py:reader=gsm8k,data_path=gsm8k/train.jsonl,test_reader=gsm8k,test_path=gsm8k/test.jsonl,...

Completions are graded by extracting the final answer (boxed, <answer> tags
or the last number) and checking it with math-verify.
The tokenizer is the model directory's own.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        data_path="",
        test_path="",
        tokenizer="",
        reader="",
        test_reader="",
    )
    c = common.rl_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    # Empty: the tokenizer files in model_path.
    c.model.tokenizer = arg.tokenizer
    c.task.name = ""
    c.task.kwargs = {}
    c.task.data_path = arg.data_path
    c.task.test_path = arg.test_path
    c.task.reader = arg.reader
    c.task.test_reader = arg.test_reader
    c.rollout.max_new_tokens = 32 if arg.runlocal else 512
    c.eval.max_new_tokens = c.rollout.max_new_tokens
    c.kl.placement = "loss"
    c.kl.coef = 0.001
    c.optim.learning_rate = 1e-6
    return c


def sweep(add):
    for lr in (5e-7, 1e-6, 2e-6):
        add(**{"optim.learning_rate": lr, "seed": 0})
