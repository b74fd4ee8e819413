r"""Reproduction: RLVR raises pass@1 but the base model reaches higher pass@k at large k.

  python -m experiments.reproduce passk --workdir /tmp/repro_passk
  python -m experiments.reproduce passk --workdir /tmp/r --runlocal --seeds 0   # smoke, ~1 min

Arms, from the shared SFT start (experiments/reproduce.py), on 3-step
arithmetic chains, 3 seeds each:

  start  the SFT start itself: one GRPO step at learning rate 0, only so that
         the trainer's final evaluation runs. optax's AdamW scales its update
         by −lr, so with lr = 0 and no weight decay every parameter update is
         exactly 0 and the evaluated policy is the start's.
  rl     GRPO from the start, 120 steps of 16 prompts × 8 samples.

Each run ends with one evaluation: 200 held-out problems (the task's test
split; a seed draws its own, and both arms of a seed see the same ones) ×
256 samples at temperature 0.6, the paper's sampling temperature (Yue et al.
also use top-p 0.95; the trainer's evaluation has no top-p). The unbiased
estimator gives pass@k for k = 1, 2, 4, ..., 256. The compared measure is
pass@256, start − rl: the claim is that it is positive. The JSON line adds,
per seed, the smallest k at which the start's pass@k reaches the RL
policy's (the crossover; None if it never does) and the pass@1 gain of RL,
and over seeds the mean start − rl at every k.

On these chains the SFT start's pass@16 at temperature 1.0 is already about
0.99 (BENCHMARKS.md, quickstart), so the large-k end can sit at the ceiling
for both arms; the lower temperature should leave it room (not yet checked
at full scale). A tie at 1.0 gives an interval at 0, which is
"inconclusive", not a reproduction.

Wall time on the 2-core CPU (estimated from its parts, not measured whole):
the SFT start ~1.5 min; each rl run ~1 min of training; each of the six
final evaluations (51,200 completions; one 2,560-row sampler call took
1.9 s after its 17 s compile) ~40 s; about 10 min in all.
"""

from configs import common, grpo_arithmetic
from rewardjax.evaluation.reproduction import Claim

ARMS = ("start", "rl")

# The paper's sampling temperature for pass@k (Yue et al. 2025, §2).
EVAL_TEMPERATURE = 0.6


def crossover_and_gain(found: dict) -> dict:
    """Per seed: the crossover k and rl's pass@1 gain; over seeds: start − rl at each k.

    The crossover is the smallest k with start pass@k ≥ rl pass@k (None: the
    start never catches up); 1 means RL never led. A tie at the ceiling
    (both 1.0) counts as catching up, so read it beside start_minus_rl_by_k.
    """
    start, rl = found.get("start", {}), found.get("rl", {})
    seeds = sorted(set(start) & set(rl))
    crossover, gain = [], []
    diffs: dict[int, list[float]] = {}
    for seed in seeds:
        ks = sorted(
            int(key.split("@")[1])
            for key in start[seed]
            if key.startswith("eval/pass@") and key in rl[seed]
        )
        diff = {k: start[seed][f"eval/pass@{k}"] - rl[seed][f"eval/pass@{k}"] for k in ks}
        crossover.append(next((k for k in ks if diff[k] >= 0), None))
        gain.append(round(rl[seed]["eval/pass@1"] - start[seed]["eval/pass@1"], 4))
        for k, d in diff.items():
            diffs.setdefault(k, []).append(d)
    return {
        "crossover_k_per_seed": crossover,
        "rl_pass_at_1_gain_per_seed": gain,
        "start_minus_rl_by_k": {str(k): round(sum(d) / len(d), 4) for k, d in diffs.items()},
    }


REPRODUCTION = Claim(
    paper=(
        "Does Reinforcement Learning Really Incentivize Reasoning Capacity in LLMs "
        "Beyond the Base Model?"
    ),
    claim=(
        "RLVR models beat their base at small k, but the base model reaches a higher pass@k at "
        "large k: the pass@k curves cross (e.g. on AIME 2024 / Minerva around k = 64-256)"
    ),
    metric="eval/pass@256",
    compare=("start", "rl"),
    direction=+1,
    curves=("pass@k",),
    paper_value="base overtakes the RLVR model at large k, around k = 64-256 (Fig. 1-2)",
    summary=crossover_and_gain,
)


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", arm="rl")
    if arg.arm not in ARMS:
        raise ValueError(f"arm={arg.arm!r}; known: {', '.join(ARMS)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    # One evaluation, after the last step.
    steps = 1 if arg.arm == "start" else 120
    common.reproduction_run(
        c, steps=steps, eval_every=steps, num_samples=256, runlocal=arg.runlocal
    )
    if arg.arm == "start":
        c.optim.learning_rate = 0.0
    c.eval.temperature = EVAL_TEMPERATURE
    # 10 prompts × 256 samples = 2,560 rows per sampler call; 200 divides evenly.
    c.eval.batch_prompts = 10
    if arg.runlocal:
        c.eval.num_problems = c.eval.batch_prompts = 2
    return c


def sweep(add):
    common.arm_sweep(add, ARMS)
