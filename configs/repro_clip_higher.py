r"""Reproduction: DAPO's clip-higher keeps the policy's entropy from collapsing.

  python -m experiments.reproduce clip_higher --workdir /tmp/repro_clip_higher

Arms, from the shared SFT start (experiments/reproduce.py), GRPO on 3-step
arithmetic chains, 3 seeds each:

  symmetric    PPO clip ε_low = ε_high = 0.2
  clip_higher  ε_low = 0.2, ε_high = 0.28 (DAPO's values)

Each rollout batch is split into 4 minibatches (4 updates per rollout, lr
1e-4), so the policy moves off the sampling policy within a step and the
clip can bind; with one update per rollout the ratio is 1 and no clip ever
acts. (8 updates at lr 3e-4, which makes the clip bind on 1-4% of tokens,
collapses even the true-reward arm: pass@1 0.57 → 0.11; docs/reproductions.md.) The
compared measure is the rollout entropy over the last quarter of training.
"""

from configs import common, grpo_arithmetic
from rewardjax.evaluation.reproduction import Claim

ARMS = {"symmetric": 0.2, "clip_higher": 0.28}

REPRODUCTION = Claim(
    paper="DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
    claim=(
        "with a symmetric clip the policy's entropy collapses; raising ε_high to 0.28 keeps it "
        "higher and improves accuracy (AIME 2024 avg@32 36 → 38 in the ablation)"
    ),
    metric="rollout/entropy/last",
    compare=("clip_higher", "symmetric"),
    direction=+1,
    curves=("rollout/entropy", "train/clip_frac", "eval/pass@1"),
    paper_value="entropy stays up instead of collapsing (Fig. 2b); AIME 36 → 38 (Table 1)",
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="symmetric")
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.loss.kwargs.clip_high = ARMS[arg.arm]
    c.updates.minibatches = 4
    c.optim.learning_rate = 1e-4
    common.reproduction_run(c, steps=120, eval_every=30, num_samples=4, runlocal=arg.runlocal)
    return c


def sweep(add):
    common.arm_sweep(add, ARMS)
