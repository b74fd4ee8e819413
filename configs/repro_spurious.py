r"""Reproduction: under random rewards the PPO clip lowers the policy's entropy.

  python -m experiments.reproduce spurious --workdir /tmp/repro_spurious
  python -m experiments.reproduce spurious --workdir /tmp/r --runlocal --seeds 0

Arms, from the shared SFT start (experiments/reproduce.py), GRPO on 3-step
arithmetic chains, 120 steps of 16 prompts × 8 samples, 3 seeds each:

  random_clip    reward ~ Bernoulli(0.5), drawn independently of the
                 completion (`random_reward`); PPO clip ε = 0.2
  random_noclip  the same reward, clip ε = 1e9: the ratio is clamped to
                 exp(20) ≈ 4.9e8 before the clip, so the clip never binds and
                 the loss is the unclipped surrogate −A·ρ
  truth          the task's verdict; clip ε = 0.2

Each rollout batch is split into 4 minibatches (4 updates per rollout, lr
1e-4), so the policy moves off the sampling policy within a step and the
clip can bind; with one update per rollout the ratio is 1 and no clip ever
acts. (8 updates at lr 3e-4, which makes the clip bind on 1-4% of tokens,
collapses even the true-reward arm: pass@1 0.57 → 0.11; docs/reproductions.md.) The random
reward's seed is the run's seed. The compared measure is the rollout entropy
over the last quarter of training, random_clip − random_noclip, claimed
negative. The JSON line also gives held-out pass@1 (200 problems × 8
samples) differences per seed: random_clip − random_noclip and
random_clip − truth (the papers' gain from random rewards).

Budget: one run trains in about 1.5 minutes on the 2-core CPU (4 updates per
step) plus three evaluations of ~10 s (steps 40, 80, 120); 9 runs and the
SFT start take about 25-30 minutes.
"""

from configs import common, grpo_arithmetic
from rewardjax.evaluation.reproduction import Claim, difference_keys

NO_CLIP = 1e9  # above exp(20), the largest ratio the loss forms
ARMS = {"random_clip": 0.2, "random_noclip": NO_CLIP, "truth": 0.2}


def summary(found: dict) -> dict:
    return difference_keys(found, (("random_clip", "random_noclip"), ("random_clip", "truth")))


REPRODUCTION = Claim(
    paper=(
        "Exploration v.s. Exploitation: Rethinking RLVR through Clipping, Entropy, and "
        "Spurious Reward; Spurious Rewards: Rethinking Training Signals in RLVR"
    ),
    claim=(
        "random rewards improve Qwen2.5-Math-7B (MATH-500 +21.4 points) because the PPO clip's "
        "bias lowers the policy's entropy (more confident outputs); without the clip the effect "
        "goes"
    ),
    metric="rollout/entropy/last",
    compare=("random_clip", "random_noclip"),
    direction=-1,
    curves=("rollout/entropy", "train/clip_frac", "eval/pass@1"),
    paper_value=(
        "entropy falls under random rewards with clipping, not without; MATH-500 +21.4 "
        "(Qwen2.5-Math-7B, random reward)"
    ),
    summary=summary,
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="random_clip", seed=0)
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.seed = arg.seed
    if arg.arm.startswith("random"):
        c.rewards.sources = {
            "random_reward": dict(weight=1.0, kwargs=dict(p=0.5, seed=arg.seed)),
        }
    c.loss.kwargs.clip_low = c.loss.kwargs.clip_high = ARMS[arg.arm]
    c.updates.minibatches = 4
    c.optim.learning_rate = 1e-4
    common.reproduction_run(c, steps=120, eval_every=40, num_samples=8, runlocal=arg.runlocal)
    return c


def sweep(add):
    common.arm_sweep(add, ARMS, seed_in_arg=True)  # the reward's noise seeded by the run's
