r"""GRPO against trained outcome reward models: one ORM, or an ensemble of K, beside the verifier.

  python -m experiments.train --config configs/rm_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/rm0
  python -m experiments.train \
      --config configs/grpo_arithmetic_orm.py:model_path=/tmp/sft/hf,orm_paths=/tmp/rm0/hf \
      --workdir /tmp/grpo_orm
  # An ensemble of three ORMs ("+"-separated), aggregated by mean − λ·std
  python -m experiments.train --config \
      configs/grpo_arithmetic_orm.py:model_path=/tmp/sft/hf,orm_paths=/tmp/rm0/hf+/tmp/rm1/hf+/tmp/rm2/hf,mode=mean_minus_std \
      --workdir /tmp/grpo_orm_ensemble

One path is an `orm_reward` source, several an `orm_ensemble_reward` source
(`rm_ensemble`: mean, median, min or mean − λ·std of the members' scores;
"Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
Reward Hacking"). transform="sigmoid" puts each score in (0, 1). With
verifier_weight=0 the ORM is the only reward (RLHF without a checker); the
task's `correct` is still logged, so the gap between the ORM's reward and
the real accuracy shows reward hacking.
"""

from configs import common, grpo_arithmetic


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        orm_paths="",
        mode="mean",
        std_coef=1.0,
        transform="sigmoid",
        orm_weight=0.5,
        verifier_weight=1.0,
    )
    paths = [p for p in str(arg.orm_paths).split("+") if p]
    if not paths:
        raise ValueError("orm_paths is empty: one exported ORM directory, or several joined by '+'")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    if len(paths) == 1:
        source = dict(
            name="orm_reward",
            weight=arg.orm_weight,
            kwargs=dict(path=paths[0], transform=arg.transform),
        )
    else:
        source = dict(
            name="orm_ensemble_reward",
            weight=arg.orm_weight,
            kwargs=dict(paths=paths, mode=arg.mode, std_coef=arg.std_coef, transform=arg.transform),
        )
    c.rewards.sources = {"orm": source}
    if arg.verifier_weight:
        c.rewards.sources["task_correct"] = dict(weight=arg.verifier_weight, kwargs={})
    return c


def sweep(add):
    # The ORM directories come from the command line (config argument).
    for mode in ("mean", "min", "mean_minus_std"):
        for seed in range(3):
            add(**{"rewards.sources.orm.kwargs.mode": mode, "seed": seed})
