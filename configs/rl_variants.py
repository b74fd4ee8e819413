r"""The GRPO family as config changes on one base: pick `algo=` on the command line.

  python -m experiments.train --config configs/rl_variants.py:algo=gspo,model_path=/tmp/sft/hf --workdir /tmp/gspo

algo: grpo | dr_grpo | gspo | rloo | reinforce_pp | remax | cispo | gmpo | prime (mechanisms.md §0-2).
advantage=<ADVANTAGES key>, loss=<POLICY_LOSSES key>: one mechanism on the variant, with
its own default hyperparameters; tis_mode=<mode>: rollout-correction weights;
reward=<keys of REWARD_FUNCTIONS below, joined by "+">: those reward functions
instead of the task's checker (which then only logs `correct`; name it as
`task_correct` to keep it as a source), e.g. reward=majority_vote_reward for
TTRL's label-free RL; gate=<one of those sources>: every other source counts
only where the gate's score is ≥ 1 (success_gated_process), e.g.
reward=task_correct+format_think,gate=task_correct;
shaping=<keys of SHAPING_STEPS below, joined by "+">: reward-shaping steps
applied in that order to the combined reward, e.g. shaping=reward_noise_flip.
(docs/catalogue.md lists a command for every mechanism.)
"""

from configs import common, grpo_arithmetic

VARIANTS = {
    "grpo": dict(),
    # Dr.GRPO: no std scaling, constant-normalised token sums.
    "dr_grpo": dict(
        advantage=dict(name="drgrpo_group_center", kwargs={}),
        loss=dict(
            name="ppo_clip",
            aggregation="seq_mean_token_sum_norm",
            kwargs=dict(loss_scale_factor=48.0),
        ),
    ),
    # GSPO: sequence-level importance ratio; its aggregation is fixed.
    "gspo": dict(
        loss=dict(
            name="gspo", aggregation="seq_mean_token_mean", kwargs=dict(clip_low=0.2, clip_high=0.2)
        )
    ),
    # RLOO and REINFORCE++ sum a k1 KL penalty into the reward (mechanisms.md §0):
    # β = 0.05 as TRL's RLOO, 0.001 as OpenRLHF's REINFORCE++ examples.
    "rloo": dict(
        advantage=dict(name="rloo", kwargs={}),
        kl=dict(placement="reward", coef=0.05, estimator="kl_k1"),
    ),
    "reinforce_pp": dict(
        advantage=dict(name="reinforce_pp_baseline", kwargs={}),
        loss=dict(
            name="ppo_clip", aggregation="token_mean", kwargs=dict(clip_low=0.2, clip_high=0.2)
        ),
        kl=dict(placement="reward", coef=0.001, estimator="kl_k1"),
    ),
    # ReMax: the baseline is the reward of one greedy rollout per prompt (the
    # trainer samples it when the estimator reads baseline_rewards); k1 KL in
    # the reward, β = 0.001, as verl's ReMax example.
    "remax": dict(
        advantage=dict(name="remax", kwargs={}),
        kl=dict(placement="reward", coef=0.001, estimator="kl_k1"),
    ),
    # PRIME: an implicit PRM trained online on the step's graded rollouts gives
    # token rewards β·log π_ψ/π_ref (β = 0.05), combined with the outcome by
    # leave-one-out per source (c_rm = c_gt = 5). The recipe's pass-rate filter
    # (curation.pass_rate, ×4 oversampling) is left off: at runlocal sizes a
    # random policy passes no prompt.
    "prime": dict(
        advantage=dict(name="prime_combined_rloo", kwargs=dict(rm_coef=5.0, gt_coef=5.0)),
        prime=dict(enabled=True, beta=0.05, update_order="before"),
    ),
    "cispo": dict(
        loss=dict(name="cispo", aggregation="token_mean", kwargs=dict(clip_low=0.2, clip_high=0.2))
    ),
    "gmpo": dict(
        loss=dict(
            name="gmpo_geo_mean",
            aggregation="seq_mean_token_mean",
            kwargs=dict(clip_low=0.2, clip_high=0.2),
        )
    ),
}


# Host reward functions selectable by `reward=`, with the kwargs that fit the
# procedural tasks' "A: <n>" answer line.
REWARD_FUNCTIONS = {
    # TTRL: reward agreement with the group's majority answer, no labels.
    "majority_vote_reward": dict(extract="last_number"),
    # Spurious rewards: Bernoulli(0.5), independent of the completion.
    "random_reward": dict(p=0.5),
    # RLCR: the task's verdict c plus a Brier term on a stated
    # <confidence>q</confidence>, r = c − (q − c)²; without one, r = c − 1.
    "rlcr_brier": dict(correct_key="correct"),
    # 1[math-verify(last number) ≡ gold] and 1[last number = gold]: the task's
    # verdict on its answer line, by the generic verifiers.
    "math_verify_equiv": dict(extract="last_number"),
    "exact_match": dict(extract="last_number"),
    # 1 for one <think>…</think> block before the answer; the procedural tasks'
    # policies write none, so it scores 0 until a policy is taught to.
    "format_think": dict(),
    # GRPO-λ: the task's verdict, plus a length penalty in groups mostly correct.
    "correctness_gated_length": dict(correct_key="correct"),
}

# Reward-shaping steps selectable by `shaping=` (rewardjax.rewards.shaping),
# with kwargs for 0/1 verifier rewards. A step with `keys` reads every reward
# source's raw score (its keys are filled in with the config's sources).
SHAPING_STEPS = {
    # The 0/1 range of the verifier (a sum of sources may leave it).
    "reward_clip": dict(low=0.0, high=1.0),
    # Flip 10% of the 0/1 rewards (r ← 1 − r), seeded per step: a noisy verifier.
    "reward_noise_flip": dict(p=0.1, seed=0),
    # U = Σ_k log σ(r_k − median of r_k in the group): high only if every source is.
    "logsigmoid_transform": dict(keys=[], reference="group_quantile", quantile=0.5),
    "reward_ensemble_agg": dict(keys=[], mode="mean"),
    # PAR: mean σ(r − r_ref) over references; here the other samples of the group
    # (the procedural tasks carry no reference responses' rewards).
    "par_bounded_centered": dict(reference="group"),
}


def get_config(arg=None):
    arg = common.parse_arg(
        arg,
        runlocal=False,
        model_path="",
        algo="grpo",
        advantage="",
        loss="",
        tis_mode="",
        reward="",
        gate="",
        shaping="",
    )
    if arg.algo not in VARIANTS:
        raise ValueError(f"algo={arg.algo!r}; known: {', '.join(sorted(VARIANTS))}")
    c = grpo_arithmetic.get_config(f"runlocal={arg.runlocal},model_path={arg.model_path}")
    for key, value in VARIANTS[arg.algo].items():
        # The keys given replace the block's; its others (e.g. kl.adaptive) stay.
        c[key] = {**c[key].to_dict(), **value}
    # One mechanism by name, with its own default hyperparameters (the variant's
    # kwargs belong to the variant's mechanism): advantage=rloo, loss=reinforce_pg.
    if arg.advantage:
        c.advantage = dict(name=arg.advantage, kwargs={})
    if arg.loss:
        c.loss.name = arg.loss
        c.loss.kwargs = {}
    if arg.tis_mode:  # rollout-correction weights on the policy loss
        c.loss.kwargs = {**c.loss.kwargs.to_dict(), "tis_mode": arg.tis_mode}
    if arg.reward:
        sources = {}
        for name in arg.reward.split("+"):
            if name != "task_correct" and name not in REWARD_FUNCTIONS:
                raise ValueError(
                    f"reward={arg.reward!r}: {name!r} unknown; known: task_correct, "
                    f"{', '.join(REWARD_FUNCTIONS)}"
                )
            sources[name] = dict(weight=1.0, kwargs=REWARD_FUNCTIONS.get(name, {}))
        c.rewards.sources = sources
    if arg.gate:
        sources = c.rewards.sources.to_dict()
        if arg.gate not in sources or len(sources) < 2:
            raise ValueError(
                f"gate={arg.gate!r} must be one of two or more reward sources; "
                f"sources: {'+'.join(sources)} (set reward=, e.g. task_correct+format_think)"
            )
        for key in sources:
            if key != arg.gate:
                sources[key]["gate"] = arg.gate
        c.rewards.sources = sources
    if arg.shaping:
        steps = []
        for name in arg.shaping.split("+"):
            if name not in SHAPING_STEPS:
                raise ValueError(
                    f"shaping={arg.shaping!r}: {name!r} unknown; known: {', '.join(SHAPING_STEPS)}"
                )
            step = {"name": name, **SHAPING_STEPS[name]}
            if "keys" in step:
                step["keys"] = list(c.rewards.sources)
            steps.append(step)
        c.rewards.shaping = steps
    return c


def sweep(add):
    for algo in VARIANTS:
        for seed in range(3):
            add(arg=f"algo={algo}", seed=seed)
