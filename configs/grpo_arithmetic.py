r"""GRPO on arithmetic chains, from an SFT warm start (a local HF directory).

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/grpo_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/grpo

Preset `grpo` of mechanisms.md §0: group-normalised advantages, PPO clip 0.2,
per-sequence token-mean aggregation, k3 KL in the loss (β = 0.04 as tunix;
set kl_coef=0 for TRL's default).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="", kl_coef=0.0)
    c = common.rl_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.advantage = dict(name="grpo_group_norm", kwargs=dict(eps=1e-6))
    c.loss = dict(
        name="ppo_clip", aggregation="seq_mean_token_mean", kwargs=dict(clip_low=0.2, clip_high=0.2)
    )
    c.kl.placement = "loss" if arg.kl_coef > 0 else "none"
    c.kl.coef = arg.kl_coef
    c.kl.estimator = "kl_k3"
    c.optim.learning_rate = 2e-4
    return c


def sweep(add):
    for kl_coef in (0.0, 0.04):
        for seed in range(3):
            add(**{"kl.coef": kl_coef, "kl.placement": "loss" if kl_coef else "none", "seed": seed})
