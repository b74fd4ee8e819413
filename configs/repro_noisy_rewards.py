r"""Reproduction: GRPO tolerates heavily flipped rewards; a format-only reward nearly matches.

  python -m experiments.reproduce noisy_rewards --workdir /tmp/repro_noisy_rewards
  python -m experiments.reproduce noisy_rewards --workdir /tmp/r --runlocal --seeds 0

Arms, from the shared SFT start (experiments/reproduce.py), GRPO on 3-step
arithmetic chains, 120 steps of 16 prompts × 8 samples, 3 seeds each:

  clean    the task's verdict, 1 for a correct answer, else 0
  flip20   the verdict flipped (r ← 1 − r) with probability 0.2 per row
  flip40   ... with probability 0.4 (the paper's heaviest noise)
  pattern  Reasoning Pattern Reward: 1 when the completion has the form of a
           solution (3 step lines "a op b = c", then "A: n"), never checking
           a value; no correctness reward at all

The flips are `reward_noise_flip` shaping, seeded by (seed, training step),
so every step flips different rows; the run's seed is its flip seed. The
compared measure is held-out pass@1 (200 problems × 8 samples) at the last
step: flip40 − clean, claimed within ±0.05 (the paper's gap is 3.8 points).
The JSON line also gives pattern − clean and flip20 − clean per seed.

Budget: one run trains in about a minute on the 2-core CPU plus three
evaluations of ~10 s (steps 40, 80, 120); 12 runs and the SFT start fit in
about 25 minutes.
"""

from configs import common, grpo_arithmetic
from rewardjax.evaluation.reproduction import Claim, difference_keys

ARMS = ("clean", "flip20", "flip40", "pattern")
FLIP_P = {"flip20": 0.2, "flip40": 0.4}
NUMBER = r"-?\d{1,15}"  # as the task's grader (rewardjax/data/tasks/base.py)


def chain_pattern(num_steps: int) -> str:
    """A regex of a solution's form: `num_steps` lines "a op b = c", then "A: n"; no values."""
    step = rf"[ \t]*{NUMBER}[ \t]*[+\-*][ \t]*{NUMBER}[ \t]*=[ \t]*{NUMBER}[ \t]*"
    return rf"(?:{step}\n){{{num_steps}}}[ \t]*A[ \t]*:[ \t]*{NUMBER}"


def summary(found: dict) -> dict:
    return difference_keys(found, (("pattern", "clean"), ("flip20", "clean")))


REPRODUCTION = Claim(
    paper=(
        "The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in Learning to Reason"
    ),
    claim=(
        "with 40% of rewards flipped, RL reaches nearly the accuracy of clean rewards "
        "(Qwen2.5-7B MATH-500 72.02% vs 75.85%); rewarding only reasoning patterns, with no "
        "correctness check, reaches over 70%"
    ),
    metric="eval/pass@1",
    compare=("flip40", "clean"),
    direction=0,
    margin=0.05,
    curves=("eval/pass@1", "reward/task_correct", "reward/mean"),
    paper_value="MATH-500 72.02% (40% flipped) vs 75.85% (clean); RPR > 70% (Qwen2.5-7B)",
    summary=summary,
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="clean", seed=0)
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.seed = arg.seed
    if arg.arm in FLIP_P:
        c.rewards.shaping = [
            dict(name="reward_noise_flip", p=FLIP_P[arg.arm], seed=arg.seed, low=0.0, high=1.0)
        ]
    if arg.arm == "pattern":
        c.rewards.sources = {
            "format_pattern": dict(
                weight=1.0,
                kwargs=dict(pattern=chain_pattern(c.task.kwargs.num_steps), full_match=True),
            )
        }
    common.reproduction_run(c, steps=120, eval_every=40, num_samples=8, runlocal=arg.runlocal)
    return c


def sweep(add):
    common.arm_sweep(add, ARMS, seed_in_arg=True)  # the reward's noise seeded by the run's
