r"""GRPO sampling with PRM process rewards plus the verifiable outcome reward.

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/prm_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/prm
  python -m experiments.train \
      --config configs/grpo_arithmetic_prm.py:model_path=/tmp/sft/hf,prm_path=/tmp/prm/hf --workdir /tmp/grpo_prm

credit picks how the PRM's step scores p_s enter the reward:
  min_form | sum_form | clip | delta   step rewards at the step-end tokens
      (`credit.py`: PURE's min-form, canonical sum-form, Gao et al.'s Clip
      and Delta), added to the outcome at the last token; the advantage is
      REINFORCE++'s whitened reward-to-go, which reads token rewards;
  none   one response score per rollout (aggregation min / last / prod /
      mean of p_s) mixed with the outcome; the advantage stays GRPO's
      group-normalised one.
placement (with a credit rule): each step's reward on its last token
("sparse") or spread evenly over its tokens ("spread", `step_to_token`).
"""

from configs import common, grpo_arithmetic


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        prm_path="",
        credit="min_form",
        aggregation="min",
        prm_weight=0.5,
        placement="sparse",
    )
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.rewards.sources = {
        "task_correct": dict(weight=1.0, kwargs={}),
        "prm_reward": dict(
            weight=arg.prm_weight,
            kwargs=dict(
                path=arg.prm_path,
                credit=arg.credit,
                aggregation=arg.aggregation,
                separator="\n",
                placement=arg.placement,
            ),
        ),
    }
    # Estimator defaults (γ = 1, ε = 1e-6) in both cases, so a sweep switches by name only.
    c.advantage = dict(
        name="grpo_group_norm" if arg.credit == "none" else "reinforce_pp", kwargs={}
    )
    if arg.credit != "none":
        c.loss.aggregation = "token_mean"
    return c


def sweep(add):
    # The PRM and SFT directories come from the command line (config argument).
    for credit in ("none", "sum_form", "min_form", "clip", "delta"):
        for seed in range(3):
            add(
                **{
                    "rewards.sources.prm_reward.kwargs.credit": credit,
                    "advantage.name": "grpo_group_norm" if credit == "none" else "reinforce_pp",
                    "loss.aggregation": "seq_mean_token_mean" if credit == "none" else "token_mean",
                    "seed": seed,
                }
            )
