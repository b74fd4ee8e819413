r"""Reproduction: TTRL's majority-vote reward, with no labels, raises pass@1 towards RL with labels.

  python -m experiments.reproduce ttrl --workdir /tmp/repro_ttrl
  python -m experiments.reproduce ttrl --workdir /tmp/r --runlocal --seeds 0   # smoke, ~1 min

Arms, from the shared SFT start (experiments/reproduce.py), GRPO on 3-step
arithmetic chains, 3 seeds each:

  start   the SFT start itself: one GRPO step at learning rate 0, only so that
          the trainer's evaluation runs (AdamW's update is −lr × ..., exactly 0).
  ttrl    120 steps whose reward is `majority_vote_reward`
          (rewardjax/rewards/label_free.py): r_i = 1 when completion i's last
          number equals the most common last number of its group of 8; the
          task's checker only logs accuracy (reward/accuracy), it rewards nothing.
  labels  the same 120 steps with the task's checker as the reward (task_correct).

Deviation from the paper: TTRL trains on the unlabelled test questions
themselves (AIME 2024's 30, voting over 64 samples, training on 32). Here the
RL prompts are unlabelled problems of the task's train split and the
evaluation is on held-out test-split problems, so what is tested is
label-free RL's gain on problems it did not train on (TTRL's
out-of-distribution result), with votes over the group of 8.

Evaluations: every 30 steps, 200 held-out problems × 8 samples at
temperature 1.0 (the start arm: once). The compared measure is the last
evaluation's pass@1, ttrl − start; the JSON line adds, per seed, the
labelled arm's gain, the ratio of TTRL's gain to it (None where the labelled
gain is ≤ 0) and TTRL's relative gain (the paper's "+159%").

Wall time on the 2-core CPU (estimate; not measured at this size): the SFT
start ~1.5 min; each of the six RL runs ~1 min of training plus 4 × ~10 s of
evaluation; the three start runs ~20 s each; about 13 min in all.
"""

from configs import common, rl_variants
from rewardjax.evaluation.reproduction import Claim

# arm → rl_variants' reward= argument ("" keeps task_correct).
ARMS = {"start": "", "ttrl": "majority_vote_reward", "labels": ""}


def gains(found: dict) -> dict:
    """Per seed: the labelled arm's pass@1 gain, TTRL gain / labelled gain, TTRL's relative gain."""
    start, ttrl, labels = (found.get(arm, {}) for arm in ARMS)
    seeds = sorted(set(start) & set(ttrl) & set(labels))
    key = "eval/pass@1"
    out: dict[str, list] = {"labels_gain_per_seed": [], "ttrl_over_labels_gain_per_seed": []}
    out["ttrl_relative_gain_per_seed"] = []
    for seed in seeds:
        base = start[seed][key]
        ttrl_gain = ttrl[seed][key] - base
        labels_gain = labels[seed][key] - base
        out["labels_gain_per_seed"].append(round(labels_gain, 4))
        out["ttrl_over_labels_gain_per_seed"].append(
            round(ttrl_gain / labels_gain, 4) if labels_gain > 0 else None
        )
        out["ttrl_relative_gain_per_seed"].append(round(ttrl_gain / base, 4) if base > 0 else None)
    return out


REPRODUCTION = Claim(
    paper="TTRL: Test-Time Reinforcement Learning",
    claim=(
        "RL with majority-vote pseudo-labels and no ground truth raises pass@1 (Qwen2.5-Math-7B, "
        "AIME 2024: 16.7 → 43.3, +159%) and approaches RL trained with the labels"
    ),
    metric="eval/pass@1",
    compare=("ttrl", "start"),
    direction=+1,
    curves=("eval/pass@1", "reward/mean", "reward/accuracy"),
    paper_value="AIME 2024 pass@1 16.7 → 43.3 (+159%, Table 1); near RL with test labels (Fig. 4)",
    summary=gains,
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="ttrl")
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = rl_variants.get_config(
        f"runlocal={arg.runlocal},model_path={arg.model_path},reward={ARMS[arg.arm]}"
    )
    steps, every = (1, 1) if arg.arm == "start" else (120, 30)
    common.reproduction_run(c, steps=steps, eval_every=every, num_samples=8, runlocal=arg.runlocal)
    if arg.arm == "start":
        c.optim.learning_rate = 0.0
    if arg.runlocal:
        c.eval.num_samples = 4
    return c


def sweep(add):
    common.arm_sweep(add, ARMS)
