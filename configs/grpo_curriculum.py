r"""GRPO with a curriculum, on arithmetic chains of mixed difficulty (2–6 operations).

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/grpo_curriculum.py:model_path=/tmp/sft/hf,curriculum=drive --workdir /tmp/drive

curriculum= picks one rule of rewardjax/training/curriculum.py (the arms of
benchmarks/curricula.py, which fixes the sampled rows of every arm):

  uniform    prompts drawn uniformly from a pool of 256 (task.pool_size)
  drive      DRIVE: uniform with G = 8 to step 60, then the hard set (stage-1
             pass rate in [0, 0.5] over >= 8 samples) with G = 32
  hints      Guide hints (prefix, adaptive length, target 0.5) for all-fail groups
  context    the same hints written into the prompt instead
  priority   2 × P candidates, the P of highest p(1 − p) by recorded pass rate
  replay     the newest correct rollout of a prompt replaces a row of its failed groups
  schedule   difficulty by steps: chains of 2–3 operations, then 2–4, then 2–6
"""

from configs import common, grpo_arithmetic

CURRICULA = ("uniform", "drive", "hints", "context", "priority", "replay", "schedule")


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", curriculum="uniform")
    if arg.curriculum not in CURRICULA:
        raise ValueError(f"curriculum={arg.curriculum!r}; known: {', '.join(CURRICULA)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.task.kwargs = dict(num_steps=(2, 6), max_operand=9)
    c.task.pool_size = 256
    c.steps = 120
    c.rollout.max_new_tokens = 64
    c.eval.max_new_tokens = 64
    cur = c.curriculum
    switch = 60
    if arg.runlocal:
        c.task.pool_size = 8
        switch = 2
        c.rollout.max_new_tokens = 32
        c.eval.max_new_tokens = 32
    if arg.curriculum == "drive":
        cur.drive.update(
            enabled=True,
            switch_step=switch,
            group_size=2 * c.rollout.group_size if arg.runlocal else 32,
            band_lo=0.0,
            band_hi=1.0 if arg.runlocal else 0.5,
            min_samples=1 if arg.runlocal else 8,
        )
    elif arg.curriculum in ("hints", "context"):
        placement = "prefix" if arg.curriculum == "hints" else "context"
        cur.hints.update(enabled=True, placement=placement, target=0.5, max_groups=4)
    elif arg.curriculum == "priority":
        cur.priority.update(enabled=True, by="stats", oversample=2)
    elif arg.curriculum == "replay":
        cur.replay.update(enabled=True, capacity=256, weight=1.0)
    elif arg.curriculum == "schedule":
        cur.schedule.update(
            by="steps",
            levels=[dict(num_steps=(2, 3)), dict(num_steps=(2, 4)), dict(num_steps=(2, 6))],
            boundaries=[1, 2] if arg.runlocal else [30, 60],
        )
    return c


def sweep(add):
    for curriculum in ("uniform", "drive", "hints", "priority"):
        for seed in range(3):
            add(arg=f"curriculum={curriculum}", seed=seed)
