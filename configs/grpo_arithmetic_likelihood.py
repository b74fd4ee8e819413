r"""RL with likelihood rewards: the policy's own probability of the reference answer after its reasoning.

  python -m experiments.train --config configs/grpo_arithmetic_likelihood.py:model_path=/tmp/sft/hf \
      --workdir /tmp/grpo_likelihood
  # RLPR: mean token probability, debiased by the no-reasoning pass, no verifier at all
  python -m experiments.train \
      --config configs/grpo_arithmetic_likelihood.py:model_path=/tmp/sft/hf,reward=rlpr_prob_reward,verifier_weight=0 \
      --workdir /tmp/rlpr

Each sampled completion's answer line is replaced by the reference answer
("A: <answer>"), and the current policy teacher-forces it: `ref_answer_logprob`
rewards the answer's (length-normalised) log-probability ("Likelihood-Based
Reward Designs for General LLM Reasoning"), `rlpr_prob_reward` its mean token
probability minus the same without reasoning, clipped to [0, 1] ("RLPR:
Extrapolating RLVR to General Domains without Verifiers"). These rewards need
no checker: with verifier_weight=0 the task's `correct` is only logged.
"""

from configs import common, grpo_arithmetic


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        reward="ref_answer_logprob",
        weight=1.0,
        verifier_weight=1.0,
    )
    kwargs = {
        "ref_answer_logprob": dict(length_normalize=True),
        "rlpr_prob_reward": dict(debias=True),
    }
    if arg.reward not in kwargs:
        raise ValueError(f"reward={arg.reward!r}; known: {', '.join(kwargs)}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.rewards.sources = {
        arg.reward: dict(weight=arg.weight, kwargs=dict(kwargs[arg.reward], answer_prefix="A: "))
    }
    if arg.verifier_weight:
        c.rewards.sources["task_correct"] = dict(weight=arg.verifier_weight, kwargs={})
    return c


def sweep(add):
    # The likelihood reward alone (verifier weight 0) against it beside the verifier.
    for verifier_weight in (0.0, 1.0):
        for seed in range(3):
            add(**{"rewards.sources.task_correct.weight": verifier_weight, "seed": seed})
