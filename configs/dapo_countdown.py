r"""DAPO on countdown: clip-higher, token-level loss, overlong penalty, dynamic sampling.

  python -m experiments.train --config configs/dapo_countdown.py:model_path=/tmp/sft_countdown/hf --workdir /tmp/dapo

Preset `dapo` of mechanisms.md §0: group-normalised advantages, PPO clip
0.2/0.28, `token_mean` over the global batch, no KL, groups with zero reward
variance dropped and the batch refilled.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(arg, runlocal=False, model_path="")
    c = common.rl_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.task = common.task_block("countdown", num_numbers=3, max_number=9)
    c.advantage = dict(name="grpo_group_norm", kwargs=dict(eps=1e-6))
    c.loss = dict(
        name="ppo_clip", aggregation="token_mean", kwargs=dict(clip_low=0.2, clip_high=0.28)
    )
    c.kl.placement = "none"
    c.curation.dynamic_sampling = True
    c.curation.max_rounds = 8
    # DAPO's soft overlong punishment: a linear penalty over the last
    # `cache_length` tokens before the budget.
    c.rewards.sources = {
        "task_correct": dict(weight=1.0, kwargs={}),
        "dapo_overlong_penalty": dict(
            weight=1.0, kwargs=dict(max_length=c.rollout.max_new_tokens, cache_length=8, factor=1.0)
        ),
    }
    c.optim.learning_rate = 2e-4
    if arg.runlocal:
        # Random tiny models rarely solve countdown: accept all groups so the
        # smoke run does not spin on refills.
        c.curation.max_rounds = 3
    return c


def sweep(add):
    for clip_high in (0.2, 0.28):
        for dynamic in (False, True):
            for seed in range(3):
                add(
                    **{
                        "loss.kwargs.clip_high": clip_high,
                        "curation.dynamic_sampling": dynamic,
                        "seed": seed,
                    }
                )
