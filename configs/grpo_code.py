r"""GRPO with a sandboxed code-execution reward on procedural one-line Python functions.

  python -m experiments.train --config configs/grpo_code.py:model_path=/tmp/sft_code/hf --workdir /tmp/grpo_code

The completion is the body of `def f(x): return ...`; the reward runs the
program on the task's assert cases in the sandbox (`code_tests_sandbox`,
all-pass), each program in its own namespaces with resource limits.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="")
    c = common.rl_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.task = common.task_block("code_functions", max_constant=9, num_tests=3)
    c.rollout.max_new_tokens = 16
    c.eval.max_new_tokens = 16
    c.rewards.sources = {
        "code_tests_sandbox": dict(weight=1.0, kwargs=dict(mode="all", extract="none")),
    }
    c.rewards.timeout_s = 30.0
    c.optim.learning_rate = 2e-4
    return c


def sweep(add):
    for mode in ("all", "fraction"):
        for seed in range(3):
            add(**{"rewards.sources.code_tests_sandbox.kwargs.mode": mode, "seed": seed})
