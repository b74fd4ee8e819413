r"""The quickstart: SFT from scratch on imperfect demonstrations, then GRPO, then held-out pass@k.

  python -m experiments.train --config configs/quickstart.py --workdir /tmp/quickstart

Runs on a 2-core CPU in a few minutes. `runlocal=True` shrinks every stage
to a smoke test.
"""

import ml_collections

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False)
    c = ml_collections.ConfigDict()
    c.trainer = "quickstart"
    c.seed = 0
    c.task = common.task_block("arithmetic_chain", num_steps=3, max_operand=9)

    c.sft = common.sft_base(runlocal=arg.runlocal)
    c.sft.task = c.task.to_dict()
    # Demonstrations with a wrong step 30% of the time: the warm start makes
    # mistakes the verifiable reward can teach it to avoid.
    c.sft.data.error_rate = 0.3

    c.rl = common.rl_base(runlocal=arg.runlocal)
    c.rl.task = c.task.to_dict()
    c.rl.optim.learning_rate = 2e-4
    c.rl.steps = 3 if arg.runlocal else 120
    if not arg.runlocal:
        c.rl.rollout.prompts_per_step = 32
        c.rl.updates.minibatches = 2
    c.rl.checkpoint.every = 0 if arg.runlocal else 20

    # Held-out evaluation before and after RL: n samples per problem give the
    # unbiased pass@k for k = 1, 2, 4, ..., n.
    c.eval = dict(
        num_problems=8 if arg.runlocal else 500,
        num_samples=4 if arg.runlocal else 16,
        temperature=1.0,
        batch_prompts=8 if arg.runlocal else 100,
        max_new_tokens=c.rl.rollout.max_new_tokens,
    )
    return c


def sweep(add):
    for seed in range(3):
        add(seed=seed, **{"sft.seed": seed, "rl.seed": seed})
