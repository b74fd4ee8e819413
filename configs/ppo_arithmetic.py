r"""PPO with a critic and GAE on arithmetic chains.

  python -m experiments.train --config configs/ppo_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/ppo

Preset `ppo` of mechanisms.md §0: a value model (the policy's backbone with a
scalar head, separate parameters), GAE with γ = λ = 1, clipped value loss,
token-mean aggregation, k1 KL in the reward (β = 0.001 as verl).
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="")
    c = common.rl_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.rollout.group_size = 1 if not arg.runlocal else 2
    c.rollout.prompts_per_step = 64 if not arg.runlocal else 8
    c.advantage = dict(name="gae", kwargs=dict(gamma=1.0, lam=1.0, whiten=True))
    c.loss = dict(
        name="ppo_clip", aggregation="token_mean", kwargs=dict(clip_low=0.2, clip_high=0.2)
    )
    c.kl.placement = "reward"
    c.kl.coef = 0.001
    c.kl.estimator = "kl_k1"
    c.critic.enabled = True
    c.critic.coef = 0.5
    c.critic.clip = 0.5
    c.updates.epochs = 2
    c.updates.minibatches = 2
    c.optim.learning_rate = 2e-4
    return c


def sweep(add):
    for lam in (0.95, 1.0):
        for seed in range(3):
            add(**{"advantage.kwargs.lam": lam, "seed": seed})
