r"""A generative judge of arithmetic-chain solutions: SFT on verdicts, then GRPO on their correctness.

  python -m experiments.train --config configs/judge_arithmetic.py:stage=sft --workdir /tmp/judge_sft
  python -m experiments.train --config configs/judge_arithmetic.py:stage=rl,model_path=/tmp/judge_sft/hf --workdir /tmp/judge_rl

The task is `judge` (rewardjax/data/tasks/judge.py): a problem of
`arithmetic_chain` with a solution (half of them with a propagated wrong
step) or, with kind=pairwise, a correct and a wrong solution; the answer is
the verdict the task's grader gives. stage=sft learns the target replies
(rationale=True: the first wrong step written out, then `Verdict: Yes/No`);
stage=rl is GRPO with the judge as the policy, rewarded 1 for a reply that
parses strictly and gives the right verdict (RM-R1 / J1's recipe).
"""

from configs import common, grpo_arithmetic

STAGES = ("sft", "rl")


def get_config(arg=None):
    arg = common.parse_arg(
        arg, runlocal=False, stage="sft", model_path="", kind="pointwise", rationale=False
    )
    if arg.stage not in STAGES:
        raise ValueError(f"stage={arg.stage!r}; known: {', '.join(STAGES)}")
    task = common.task_block(
        "judge",
        task="arithmetic_chain",
        task_kwargs=dict(num_steps=3, max_operand=9),
        kind=arg.kind,
        rationale=arg.rationale,
        error_rate=0.5,
    )
    # Replies: a verdict word, or a one-line rationale and a verdict line.
    new_tokens = 64 if arg.rationale else 8
    if arg.stage == "sft":
        c = common.sft_base(runlocal=arg.runlocal)
        c.model.path = arg.model_path
        c.task = task
        c.data.error_rate = 0.0  # the demonstrations are the exact verdicts
        c.eval.max_new_tokens = new_tokens
        return c
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    c.task = task
    c.rollout.max_new_tokens = new_tokens
    c.eval.max_new_tokens = new_tokens
    return c


def sweep(add):
    for rationale in (False, True):
        for seed in range(3):
            add(arg=f"stage=sft,rationale={rationale}", seed=seed)
