r"""A generative judge of arithmetic-chain solutions: SFT on verdicts, then GRPO on their correctness.

  python -m experiments.train --config configs/judge_arithmetic.py:stage=sft --workdir /tmp/judge_sft
  python -m experiments.train --config configs/judge_arithmetic.py:stage=rl,model_path=/tmp/judge_sft/hf --workdir /tmp/judge_rl
  python -m experiments.train --config configs/judge_arithmetic.py:stage=policy,model_path=/tmp/sft/hf,judge_path=/tmp/judge_rl/hf --workdir /tmp/judged

The task is `judge` (rewardjax/data/tasks/judge.py): a problem of
`arithmetic_chain` with a solution (half of them with a propagated wrong
step) or, with kind=pairwise, a correct and a wrong solution; the answer is
the verdict the task's grader gives (kind=stepwise: a verdict per solution
line, ThinkPRM / GenPRM style). stage=sft learns the target replies
(rationale=True: the first wrong step written out, then `Verdict: Yes/No`);
stage=rl is GRPO with the judge as the policy, rewarded 1 for a reply that
parses strictly and gives the right verdict (RM-R1 / J1's recipe).
stage=policy trains a policy on arithmetic_chain with the frozen judge as its
only reward (`generative_judge_reward`: P("Yes") in one pass, or judge_mode=vote
for K sampled verdicts); the task's checker is still logged, not rewarded.
"""

from configs import common, grpo_arithmetic

STAGES = ("sft", "rl", "policy")


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        stage="sft",
        model_path="",
        kind="pointwise",
        rationale=False,
        judge_path="",
        judge_mode="p_yes",
        master_keys=0.0,
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
        # Share of judge problems whose solution is a master key (verdict No): the
        # augmentation against answers that fool judges.
        master_keys=arg.master_keys,
    )
    # Replies: a verdict word, or a one-line rationale and a verdict line;
    # stepwise: a verdict line per solution line (each after a note with rationale).
    if arg.kind == "stepwise":
        new_tokens = 256 if arg.rationale else 96
    else:
        # The longest rationale ("Step 2 is wrong: 12-3=8 should be 12-3=9. The
        # final answer is still right.") and its verdict line fit in 128.
        new_tokens = 128 if arg.rationale else 8
    if arg.stage == "sft":
        c = common.sft_base(runlocal=arg.runlocal)
        c.model.path = arg.model_path
        c.task = task
        c.data.error_rate = 0.0  # the demonstrations are the exact verdicts
        c.eval.max_new_tokens = new_tokens
        return c
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    if arg.stage == "policy":
        # The judge replaces the checker as the reward (weight 0 keeps its accuracy in the logs).
        c.rewards.sources = {
            "task_correct": dict(weight=0.0, kwargs={}),
            "generative_judge_reward": dict(
                weight=1.0,
                kwargs=dict(
                    path=arg.judge_path,
                    mode=arg.judge_mode,
                    rationale=arg.rationale,
                    max_new_tokens=new_tokens,
                ),
            ),
        }
        return c
    c.task = task
    c.rollout.max_new_tokens = new_tokens
    c.eval.max_new_tokens = new_tokens
    return c


def sweep(add):
    for rationale in (False, True):
        for seed in range(3):
            add(arg=f"stage=sft,rationale={rationale}", seed=seed)
