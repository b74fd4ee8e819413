r"""Iterated RAFT (reward-ranked fine-tuning) on arithmetic chains, from an SFT warm start.

  python -m experiments.train --config configs/sft_arithmetic.py:error_rate=0.3 --workdir /tmp/sft
  python -m experiments.train --config configs/raft_arithmetic.py:model_path=/tmp/sft/hf --workdir /tmp/raft
  python -m experiments.train --config configs/raft_arithmetic.py:runlocal=True --workdir /tmp/raft_local

Each step samples data.samples_per_prompt (N) completions for each of
data.prompts_per_batch train prompts from the current policy, grades them with
the task's checker (the verifier selector), and trains the NLL of the top_k of
each prompt's N (ties broken by sample order; top_k = N is SFT on every
sample). With the 0/1 verifier, threshold=1.0 also drops wrong samples, so a
group with no correct one trains on nothing (positive best-of-N cloning):

  python -m experiments.train --config configs/raft_arithmetic.py:model_path=/tmp/sft/hf,threshold=1.0 --workdir /tmp/raft_pos

mechanisms.md `raft_reward_ranked`.
"""

from configs import common


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        samples_per_prompt=None,
        prompts_per_batch=None,
        top_k=1,
        threshold=None,
    )
    c = common.sft_base(runlocal=arg.runlocal)
    c.model.path = arg.model_path
    c.objective.loss = "raft_reward_ranked"
    c.objective.kwargs = dict(top_k=arg.top_k, aggregation="token_mean")
    if arg.threshold is not None:
        c.objective.kwargs.threshold = arg.threshold
    # N completions for each of P prompts: a batch of P·N rows, k·P of them trained on.
    n = arg.samples_per_prompt or (4 if arg.runlocal else 8)
    prompts = arg.prompts_per_batch or (2 if arg.runlocal else 16)
    c.data.samples_per_prompt = n
    c.data.prompts_per_batch = prompts
    c.data.sample_temperature = 1.0
    c.batch_size = prompts * n
    if not arg.runlocal:
        c.steps = 200
        c.optim = common.optim_block(
            learning_rate=2e-4, schedule="cosine", warmup_steps=10, total_steps=200, end_factor=0.1
        )
    return c


def sweep(add):
    for top_k in (1, 2, 8):
        for seed in range(3):
            add(**{"objective.kwargs.top_k": top_k, "seed": seed})
