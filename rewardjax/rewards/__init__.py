"""Host-side reward functions on decoded text, the code sandbox, likelihood rewards and shaping.

    from rewardjax.rewards import RewardFunctionPool
    computer = RewardFunctionPool([{"name": "math_verify_equiv", "weight": 1.0},
                               {"name": "format_think", "weight": 0.1}])
    scores, stats = computer(prompts, completions, fields)

Importing this package registers every reward in `rewardjax.registry.REWARDS`
and every transform in `rewardjax.registry.SHAPING`.
"""

from rewardjax.rewards import (
    code,
    format,
    label_free,
    length,
    likelihood,
    math,
    sandbox,
    shaping,
    spurious,
)
from rewardjax.rewards.base import (
    RewardFunctionPool,
    RewardInfo,
    RewardOutput,
    RewardSpec,
    compute_rewards,
    register_reward,
    reward_info,
)
from rewardjax.rewards.code import code_reward, extract_code, human_eval_fields
from rewardjax.rewards.format import format_pattern, format_think
from rewardjax.rewards.label_free import (
    brier_reward,
    majority_vote_labels,
    majority_vote_reward,
    rlcr_brier,
)
from rewardjax.rewards.length import (
    correct_only_length_penalty,
    correctness_gated_length,
    dapo_overlong_penalty,
    kimi_length_reward,
    overlong_penalty,
    repetition_penalty,
)
from rewardjax.rewards.likelihood import ref_answer_logprob, rlpr_prob_reward
from rewardjax.rewards.math import (
    exact_match,
    extract_answer,
    math_verify_equiv,
    numeric_match,
)
from rewardjax.rewards.shaping import (
    apply_shaping,
    logsigmoid_transform,
    par_bounded_centered,
    per_source_normalization,
    reward_clip,
    reward_ensemble_agg,
    reward_noise_flip,
    success_gate,
    weighted_sum,
)
from rewardjax.rewards.spurious import random_reward

__all__ = [
    "RewardFunctionPool",
    "RewardInfo",
    "RewardOutput",
    "RewardSpec",
    "apply_shaping",
    "brier_reward",
    "code",
    "code_reward",
    "compute_rewards",
    "correct_only_length_penalty",
    "correctness_gated_length",
    "dapo_overlong_penalty",
    "exact_match",
    "extract_answer",
    "extract_code",
    "format",
    "format_pattern",
    "format_think",
    "human_eval_fields",
    "kimi_length_reward",
    "label_free",
    "length",
    "likelihood",
    "logsigmoid_transform",
    "majority_vote_labels",
    "majority_vote_reward",
    "math",
    "math_verify_equiv",
    "numeric_match",
    "overlong_penalty",
    "par_bounded_centered",
    "per_source_normalization",
    "random_reward",
    "ref_answer_logprob",
    "register_reward",
    "repetition_penalty",
    "reward_clip",
    "reward_ensemble_agg",
    "reward_info",
    "reward_noise_flip",
    "rlcr_brier",
    "rlpr_prob_reward",
    "sandbox",
    "shaping",
    "spurious",
    "success_gate",
    "weighted_sum",
]
