r"""RL with PAV's progress rewards under a prover policy, beside the verifiable outcome.

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train \
      --config configs/grpo_arithmetic_pav.py:model_path=/tmp/sft/hf --workdir /tmp/grpo_pav
  # A prover other than the start, e.g. an earlier or a best-of-K checkpoint
  python -m experiments.train \
      --config configs/grpo_arithmetic_pav.py:model_path=/tmp/sft/hf,prover_path=/tmp/prover/hf \
      --workdir /tmp/grpo_pav2

Each step of each rollout is rewarded with its progress under the prover μ,
α·(V^μ(h_≤s) − V^μ(h_<s)), V^μ estimated from K prover rollouts per prefix
("Rewarding Progress: Scaling Automated Process Verifiers for LLM Reasoning").
The prover is frozen: by default the SFT start, which is a different policy
from the one being trained after the first update. The outcome reward is
added at the last token; REINFORCE++'s whitened reward-to-go reads both.
coef=0 gives the outcome-only run with the same estimator (the ablation).
"""

from configs import common, grpo_arithmetic


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, model_path="", prover_path="", coef=0.5, k=4, placement="sparse"
    )
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.rewards.sources = {
        "task_correct": dict(weight=1.0, kwargs={}),
        "pav_progress_reward": dict(
            weight=1.0,
            kwargs=dict(
                prover_path=arg.prover_path or arg.model_path,
                coef=arg.coef,
                k=arg.k,
                max_new_tokens=c.rollout.max_new_tokens,
                separator="\n",
                placement=arg.placement,
            ),
        ),
    }
    c.advantage = dict(name="reinforce_pp", kwargs={})
    c.loss.aggregation = "token_mean"
    return c


def sweep(add):
    # The SFT (and prover) directories come from the command line (config argument).
    for coef in (0.0, 0.5):
        for seed in range(3):
            add(**{"rewards.sources.pav_progress_reward.kwargs.coef": coef, "seed": seed})
