r"""The classic recipes on published datasets with a local chat checkpoint (docs/recipes.md).

  python -m experiments.train --config configs/recipes.py:recipe=grpo_gsm8k,model=/models/qwen2.5-0.5b-instruct,train=gsm8k/train.jsonl,test=gsm8k/test.jsonl --workdir /tmp/grpo_gsm8k

recipe:
  grpo_gsm8k          GRPO on GSM8K (math-verify on the final answer)
  drgrpo_math         Dr.GRPO on MATH, held out on MATH-500 (no std scaling,
                      constant-normalised token sums, no KL)
  grpo_mbpp           GRPO on MBPP, graded by the tests in the sandbox
  dpo_ultrafeedback   DPO (sigmoid, β = 0.1) on UltraFeedback-binarized
  rm_ultrafeedback    a Bradley–Terry reward model on UltraFeedback-binarized
  prm_math_shepherd   a PRM on Math-Shepherd, held out on ProcessBench (GSM8K subset)

model: an HF directory (Qwen2 / Llama family) with its tokenizer and chat
template; every prompt is written with that template (`prompt.chat_template`).
train / test: the dataset files as distributed (JSONL, JSON or Parquet), read
by the recipe's published format (`rewardjax.data.published`).

Hyperparameters follow the papers' or the reference implementations' small-model
settings where they give them (DeepSeekMath / TRL GRPO: lr 1e-6, β 0.001 … 0.04,
G = 8; Dr.GRPO: β = 0; Zephyr DPO: lr 5e-7, β 0.1; Math-Shepherd: lr 2e-6).
"""

from configs import common, rl_variants

# The instruction Qwen2.5-Math and the Dr.GRPO / SimpleRL recipes append to math prompts.
BOXED = "\nPlease reason step by step, and put your final answer within \\boxed{}."
# MBPP's prompt names the tests; the grader runs the last ```python block.
CODE = "\nWrite the function in one ```python code block."

RL = {
    "grpo_gsm8k": dict(reader="gsm8k", test_reader="gsm8k", suffix=BOXED, max_new_tokens=512),
    "drgrpo_math": dict(
        reader="math", test_reader="math500", suffix=BOXED, max_new_tokens=1024, algo="dr_grpo"
    ),
    "grpo_mbpp": dict(reader="mbpp", test_reader="mbpp", suffix=CODE, max_new_tokens=512),
}
OFFLINE = {
    "dpo_ultrafeedback": dict(kind="dpo", reader="ultrafeedback_binarized"),
    "rm_ultrafeedback": dict(kind="rm", reader="ultrafeedback_binarized"),
    "prm_math_shepherd": dict(kind="prm", reader="math_shepherd", test_reader="processbench"),
}


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, recipe="grpo_gsm8k", model="", train="", test="")
    if arg.recipe in RL:
        c = _rl(arg, **RL[arg.recipe])
    elif arg.recipe in OFFLINE:
        c = _offline(arg, **OFFLINE[arg.recipe])
    else:
        raise ValueError(f"recipe={arg.recipe!r}; known: {', '.join([*RL, *OFFLINE])}")
    c.model.path = arg.model
    c.model.tokenizer = ""  # the model directory's own
    c.model.remat = "full"  # the memory of docs/recipes.md's table
    c.prompt.chat_template = True
    return c


def _rl(arg, *, reader, test_reader, suffix, max_new_tokens, algo="grpo"):
    c = common.rl_base(runlocal=arg.runlocal)
    for key, value in rl_variants.VARIANTS[algo].items():
        c[key] = {**c[key].to_dict(), **value}
    c.task.name, c.task.kwargs = "", {}
    c.task.data_path, c.task.reader = arg.train, reader
    c.task.test_path, c.task.test_reader = arg.test, test_reader
    c.task.skip_long_prompts = True
    c.prompt.suffix = suffix
    c.optim.learning_rate = 1e-6
    if not arg.runlocal:  # runlocal keeps rl_base's small sizes
        c.steps = 500
        c.rollout.prompts_per_step = 16
        c.rollout.group_size = 8
        c.rollout.max_new_tokens = c.eval.max_new_tokens = max_new_tokens
        c.microbatches = 8  # 16 rows of 768-1536 tokens per micro-batch (docs/recipes.md)
        c.eval.every = 50
        c.eval.num_problems = 500
        c.eval.num_samples = 4
        c.eval.batch_prompts = 32
        c.checkpoint.every = 50
    if algo == "dr_grpo":
        # Dr.GRPO: a constant normaliser (the generation budget), and no KL term.
        c.loss.kwargs = {"loss_scale_factor": float(c.rollout.max_new_tokens)}
        c.kl.placement, c.kl.coef = "none", 0.0
    else:
        c.kl.placement, c.kl.coef = "loss", 0.001
    return c


def _offline(arg, *, kind, reader, test_reader=""):
    c = common.offline_base(kind, runlocal=arg.runlocal)
    c.data.train_path, c.data.reader = arg.train, reader
    c.data.test_path, c.data.test_reader = arg.test, test_reader or (reader if arg.test else "")
    c.data.prompt_length = 512
    c.data.completion_length = 512
    if not arg.runlocal:  # runlocal keeps offline_base's small sizes
        c.batch_size = 32
        c.microbatches = 4
        c.steps = c.optim.total_steps = 1000
        c.eval.every = 200
        c.checkpoint.every = 200
    if kind == "dpo":
        c.optim.learning_rate = 5e-7
        c.optim.warmup_steps = 1 if arg.runlocal else 100
    elif kind == "rm":
        c.optim.learning_rate = 2e-6
    else:
        c.data.max_steps = 32
        c.optim.learning_rate = 2e-6
    return c
