"""Shared pieces of experiment configs: argument parsing and the base blocks.

A config file's `get_config(arg)` receives the text after the colon in
`--config configs/x.py:arg`, e.g. `runlocal=True,model_path=/models/q`.
"""

from __future__ import annotations

import ast

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses "k=v,k2=v2" into a ConfigDict over `defaults`; unknown keys are errors.

    Values are Python literals when they parse as one (True, 3, 0.5), else strings.
    """
    out = ml_collections.ConfigDict(dict(defaults))
    if not arg:
        return out
    for item in arg.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"config argument {item!r} is not of the form key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        if key not in defaults:
            raise KeyError(f"unknown config argument {key!r}; known: {', '.join(sorted(defaults))}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        out[key] = parsed
    return out


def arg_items(arg: str | None) -> dict[str, str]:
    """A "k=v,..." config argument as {k: v}, values left as text (no defaults checked)."""
    items = {}
    for item in filter(str.strip, (arg or "").split(",")):
        key, _, value = item.partition("=")
        items[key.strip()] = value.strip()
    return items


def merge_args(base: str | None, extra: str | None) -> str:
    """Two "k=v,..." config arguments as one; `extra`'s keys win, `base`'s others stay."""
    items = {**arg_items(base), **arg_items(extra)}
    return ",".join(f"{k}={v}" for k, v in items.items())


def model_block(*, preset: str = "tiny", path: str = "", tokenizer: str = "char") -> dict:
    """Which policy to load: an HF directory (`path`) or a preset trained from scratch."""
    return dict(
        preset=preset,
        path=path,
        # "char" is the built-in character vocabulary of the procedural tasks;
        # empty means the model directory's own tokenizer.
        tokenizer=tokenizer,
        dtype="float32",
        remat="none",
        overrides={},
    )


def prompt_block() -> dict:
    """How prompts are written for the checkpoint (`rewardjax.tokenizers.PromptFormat`)."""
    return dict(
        # Render each prompt with the tokenizer's chat template and generation
        # prompt (a checkpoint's tokenizer_config.json / chat_template.jinja);
        # a dataset's message lists (UltraFeedback, HH-RLHF, conversations) are
        # rendered whole. False: the prompt text as is.
        chat_template=False,
        # A system message first; without a template it precedes the prompt.
        system="",
        # Appended to the last user message, e.g.
        # "\nPlease reason step by step, and put your final answer within \\boxed{}."
        suffix="",
    )


def lora_block() -> dict:
    """LoRA adapters on the policy's projections (`rewardjax.models.lora`); rank 0: full training."""
    return dict(
        # With rank > 0 only the adapters (and a reward / PRM / value head) are
        # trained and hold optimizer state; the reference model of KL and DPO is
        # the base with the adapters off; the HF export folds them in.
        rank=0,
        alpha=16.0,
        # Projection names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
        # down_proj); empty: all of them.
        targets=[],
        # The adapters' storage dtype. The frozen base follows model.dtype:
        # model.dtype="bfloat16" with float32 adapters halves the base's memory
        # while the trained weights and their optimizer stay in full precision.
        dtype="float32",
        # RL only: fold the adapters into a copy of the kernels before each
        # rollout (one merge per step) instead of decoding base + adapters.
        # At the Qwen2.5-0.5B shape (rank 16, every projection, 16 rows) the
        # merge takes 0.49 s and saves 3.5% of decode time, so it pays for
        # rollouts beyond about 90 new tokens, at the cost of a second copy of
        # the targeted kernels while the rollout runs (benchmarks/lora.py
        # --part sampler; BENCHMARKS.md).
        merge_for_rollout=False,
        # A PEFT adapter directory to start from (its rank, alpha and targets
        # replace the ones above; model.path is its base). A run with adapters
        # also exports them as workdir/peft beside the merged workdir/hf.
        adapter_path="",
    )


def optim_block(*, learning_rate: float, total_steps: int = 0, **kw) -> dict:
    block = dict(
        learning_rate=learning_rate,
        schedule="constant",
        warmup_steps=0,
        total_steps=total_steps,
        end_factor=0.0,
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        max_grad_norm=1.0,
    )
    block.update(kw)
    return block


def task_block(name: str = "arithmetic_chain", **kwargs) -> dict:
    """A procedural task by registry name and constructor kwargs, or a JSONL prompt file."""
    return dict(
        name=name,
        kwargs=kwargs,
        # A JSONL file of {"prompt", "answer", ...} rows replaces the procedural
        # task's training prompts; graded by the math answer reward.
        data_path="",
        test_path="",
        # The published format of data_path / test_path (rewardjax.data.published:
        # "gsm8k", "math", "math500", "humaneval", "mbpp"; empty: the JSONL rows
        # above), and renames of its fields for look-alike files ({"question": "query"}).
        # Code formats are graded by their tests in the sandbox, the others by math-verify.
        reader="",
        reader_fields={},
        test_reader="",
        test_reader_fields={},
        # A prompt-file row whose tokens + rollout.max_new_tokens exceed the
        # model's positions: an error naming the row at start (False), or
        # skipped and counted (True).
        skip_long_prompts=False,
        # A procedural task's training prompts: its first pool_size train problems,
        # read in shuffled epochs, so prompts recur (0: an endless stream of new ones).
        pool_size=0,
    )


def reproduction_run(
    c: ml_collections.ConfigDict,
    *,
    steps: int,
    eval_every: int,
    num_samples: int,
    num_problems: int = 200,
    runlocal: bool = False,
) -> ml_collections.ConfigDict:
    """A reproduction run (configs/repro_*.py): its length and held-out evaluations, no files kept.

    No checkpoints, sample logs or HF export: experiments/reproduce.py reads
    only metrics.jsonl. runlocal: 2 steps, evaluated at the end on 8 problems.
    """
    c.steps = steps
    c.eval.every = eval_every
    c.eval.num_problems = num_problems
    c.eval.num_samples = num_samples
    c.checkpoint.every = 0
    c.log.samples_every = 0
    c.export_hf = False
    if runlocal:
        c.steps, c.eval.every, c.eval.num_problems = 2, 2, 8
    return c


def arm_sweep(add, arms, *, seeds: int = 3, seed_in_arg: bool = False) -> None:
    """sweep(add) of a reproduction: every arm × seeds 0..seeds−1.

    seed_in_arg: also pass the seed in the config argument (for configs whose
    reward noise is seeded by it).
    """
    for arm in arms:
        for seed in range(seeds):
            add(arg=f"arm={arm}" + (f",seed={seed}" if seed_in_arg else ""), seed=seed)


def rl_base(*, runlocal: bool = False) -> ml_collections.ConfigDict:
    """Every key the RL trainer reads, with GRPO defaults (see mechanisms.md §0 presets)."""
    c = ml_collections.ConfigDict()
    c.trainer = "rl"
    c.seed = 0
    c.steps = 200
    c.model = model_block()
    c.prompt = prompt_block()
    c.lora = lora_block()
    # Recompute each block in the backward pass. On a 2-core CPU this is faster
    # as well as smaller (the saved activations of the scanned layers cost more
    # memory traffic than the recomputation: GRPO update 0.112 s vs 0.138 s at
    # benchmarks/grpo_step.py's size), and TRL's GRPOConfig checkpoints by default.
    c.model.remat = "full"
    c.task = task_block("arithmetic_chain", num_steps=3, max_operand=9)
    # Completions per prompt: the group the advantage is relative to.
    # cache_block: a decode step reads the KV cache up to the filled length
    # rounded up to a multiple of it (0: the sampler's default, an eighth of the
    # completion bucket); compact_min_rows: finished rows leave the decode batch
    # (halving it) down to this many rows (0: never). Neither changes samples.
    c.rollout = dict(
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=48,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        cache_block=0,
        compact_min_rows=8,
    )
    c.advantage = dict(name="grpo_group_norm", kwargs=dict(eps=1e-6))
    # loss.kwargs: the registered loss's keyword-only hyperparameters, checked
    # when the trainer starts (a mistyped key fails, naming itself). impl:
    # "auto" runs ppo_clip with its KL and entropy terms as one fused kernel
    # pass where the kernel applies (tis_mode "off", k3 KL) and the composed
    # objectives elsewhere; "reference" forces the composition, "chunked" /
    # "pallas" the kernel (an error where it does not apply).
    c.loss = dict(
        name="ppo_clip",
        aggregation="seq_mean_token_mean",
        kwargs=dict(clip_low=0.2, clip_high=0.2, impl="auto"),
    )
    # KL(π_θ‖π_ref): placement "loss" (GRPO), "reward" (PPO, RLOO, REINFORCE++) or "none".
    # β = coef > 0 exactly when placement != "none" (checked at start); β enters
    # each update as a scalar input, so an adaptive β never recompiles.
    c.kl = dict(
        placement="none", coef=0.0, estimator="kl_k3", adaptive=False, target=0.1, horizon=10000.0
    )
    c.entropy_coef = 0.0
    c.critic = dict(enabled=False, coef=0.5, clip=0.5)
    # PRIME online (rewardjax/training/prime.py): an implicit PRM ψ, started from
    # the initial policy, takes `updates` steps of its outcome cross-entropy on
    # each step's rollouts (label: the task's `correct`) and gives token rewards
    # β·log π_ψ/π_ref (π_ref: the frozen initial policy) to an advantage
    # estimator that reads process rewards (prime_combined_rloo). update_order:
    # "before" rewards the batch with ψ after this step's update (PRIME, verl),
    # "after" with ψ before it. learning_rate: ψ's own (0: optim.learning_rate;
    # ψ shares the rest of the optim block).
    c.prime = dict(enabled=False, beta=0.05, learning_rate=0.0, updates=1, update_order="before")
    # LaSeR (rewardjax/objectives/reward_modeling.py laser_last_token_mse): the
    # policy's log-prob of a token t* after its completion's last token, scaled
    # kl_coef·(log π(t*) − c), is fit to the verifier's outcome with weight coef,
    # in the same forward pass as the policy loss. token: t* as text (one token;
    # empty: the tokenizer's BOS). c: the initial policy's mean log π(t*) on the
    # first batch (estimate_ref_constant), else ref_constant.
    c.laser = dict(
        enabled=False,
        token="",
        kl_coef=0.1,
        coef=0.1,
        estimate_ref_constant=True,
        ref_constant=0.0,
    )
    # Reward sources: key → {weight, kwargs[, name, gate]}; "task_correct" grades with the
    # task's checker, gate="task_correct" counts a source only where the answer is right.
    # Every key here, in a source and in a shaping step is checked at start
    # (rewardjax/training/rl_rewards.py documents them).
    c.rewards = dict(
        sources={"task_correct": dict(weight=1.0, kwargs={})},
        # unscorable: a sample whose reward function raised, timed out or gave a
        # non-finite score scores `fallback` ("fallback"), or its row is left out
        # of the advantage and its group's statistics ("exclude"; None too).
        unscorable="fallback",
        fallback=0.0,
        # The task checker's outcome as {0, 1} ("01") or {-1, +1} ("pm1").
        verifier_scale="01",
        # Ordered rewardjax.rewards.shaping steps on the combined reward, e.g.
        # [dict(name="reward_clip", low=-1.0, high=1.0)].
        shaping=[],
        # Threads and processes of the reward-function pools (0: their defaults).
        num_workers=0,
        timeout_s=10.0,
    )
    # zero_variance: "keep" rows of all-equal-reward groups in the loss (A = 0
    # there) or "mask" them out of the loss and its normalisers.
    # pass_rate: PRIME's online filter, keep prompts with lo <= pass rate <= hi.
    c.curation = dict(
        dynamic_sampling=False,
        pass_rate=dict(enabled=False, lo=0.2, hi=0.8, filter_truncate=True),
        # Sample this many times prompts_per_step prompts per round for the filters
        # above to keep prompts_per_step of (PRIME: 4 with the pass-rate filter).
        oversample=1,
        max_rounds=8,
        zero_variance="keep",
    )
    # Which prompts a step spends rollouts on, and how (rewardjax/training/curriculum.py).
    c.curriculum = dict(
        # Difficulty over training: levels of task kwargs (merged over task.kwargs),
        # advanced at step boundaries ("steps") or when the mean training accuracy
        # of the last `window` steps reaches advance_at ("pass_rate").
        schedule=dict(by="none", levels=[], boundaries=[], advance_at=0.7, window=4),
        # DRIVE: stage 1 uniform (rollout.group_size); from switch_step (or once
        # switch_coverage of the pool was seen) the same rows go to the hard set,
        # pool prompts with a stage-1 pass rate in [band_lo, band_hi] over >=
        # min_samples samples (hardest first, at most hard_set_size; 0: all), with
        # group_size samples each. A prompt whose group passes above
        # retain_max_pass leaves the hard set (1.0: kept throughout).
        drive=dict(
            enabled=False,
            switch_step=0,
            switch_coverage=0.0,
            group_size=64,
            band_lo=0.0,
            band_hi=0.5,
            min_samples=8,
            hard_set_size=0,
            retain_max_pass=1.0,
        ),
        # Draw oversample × P candidates, keep the P of most signal p(1 − p): by
        # their recorded pass rate ("stats", unseen ones score unseen_score) or by
        # their own rollouts ("rollouts": oversample × the sampling).
        priority=dict(enabled=False, by="stats", oversample=2, unseen_score=0.25),
        # Guide / SEELE hints: an all-fail group is sampled again with the first
        # k reference lines (k from init_steps, one line per hinted group towards
        # the target pass rate), at most max_groups groups per step (0: any). The
        # hint opens the completion ("prefix") or joins the prompt ("context",
        # written by template); the update's ratio is taken against the hinted
        # sampling distribution. A prompt without reference lines (a prompt
        # file's row) is not hinted; the count is logged (hint_unavailable_groups).
        hints=dict(
            enabled=False,
            placement="prefix",
            target=0.5,
            init_steps=1,
            max_groups=0,
            template="Hint: {hint}\n",
        ),
        # The newest correct rollout of each prompt (at most capacity prompts)
        # replaces the last row of a later group of that prompt that fails
        # entirely; its advantage is scaled by weight (in (0, 1]).
        replay=dict(enabled=False, capacity=256, weight=1.0),
    )
    c.updates = dict(
        epochs=1,
        minibatches=1,
        shuffle=True,
        # Rows per forward pass when recomputing old / reference log-probs.
        forward_chunk=128,
        # Run each prompt once per group of G samples, not G times (its keys and
        # values serve the group); minibatches then hold whole groups.
        shared_prompt=True,
    )
    # Gradient-accumulation steps per update (a minibatch's rows must divide by it).
    c.microbatches = 1
    # Stop (after checkpointing the last good state) after this many updates
    # in a row skipped for a non-finite loss or gradient.
    c.max_consecutive_skips = 5
    # Device mesh: sizes of the data / fsdp / tensor axes, -1 = the rest.
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    c.logprob_impl = "auto"
    c.optim = optim_block(learning_rate=1e-5)
    c.eval = dict(
        every=0,
        num_problems=200,
        num_samples=4,
        temperature=1.0,
        batch_prompts=50,
        max_new_tokens=48,
    )
    c.log = dict(every=1, samples_every=10, num_samples=8)
    c.checkpoint = dict(every=50, keep=2, best_metric="", async_save=True)
    # Also write the final policy as an HF checkpoint under workdir/hf.
    c.export_hf = True
    if runlocal:
        c.steps = 3
        c.rollout.prompts_per_step = 4
        c.rollout.group_size = 4
        c.rollout.max_new_tokens = 32
        c.eval.max_new_tokens = 32
        c.eval.num_problems = 8
        c.eval.batch_prompts = 8
        c.checkpoint.every = 0
        c.log.samples_every = 1
    return c


def sft_base(*, runlocal: bool = False) -> ml_collections.ConfigDict:
    """Every key the offline trainer reads for SFT on demonstrations or ranked policy samples."""
    c = ml_collections.ConfigDict()
    c.trainer = "offline"
    c.seed = 0
    c.steps = 600
    c.batch_size = 64
    c.microbatches = 1
    c.model = model_block()
    c.prompt = prompt_block()
    c.lora = lora_block()
    c.task = task_block("arithmetic_chain", num_steps=3, max_operand=9)
    # loss: a SFT_LOSSES key (sft_nll, dft_prob_weighted, asft_anchored with
    # kwargs.kl_coef: KL to the frozen initial policy, raft_reward_ranked).
    c.objective = dict(kind="sft", loss="sft_nll", kwargs=dict(aggregation="token_mean"))
    # Device mesh: sizes of the data / fsdp / tensor axes, -1 = the rest.
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    # Demonstrations: a JSONL file of {"prompt", "response"} rows or of
    # {"messages": [...]} conversations, one demonstration per assistant turn
    # (train_path, format "demonstrations"), or, when empty, the task's own. error_rate: share
    # of generated ones with a deliberate wrong step (that propagates), so the
    # SFT policy starts imperfect and RL has something to fix.
    # objective.loss="raft_reward_ranked" trains on the policy's own samples
    # instead: samples_per_prompt (N) at sample_temperature for each of
    # prompts_per_batch task prompts (batch_size = prompts_per_batch × N);
    # 0 for every other loss.
    c.data = dict(
        train_path="",
        error_rate=0.0,
        completion_length=48,
        samples_per_prompt=0,
        prompts_per_batch=0,
        sample_temperature=1.0,
    )
    c.logprob_impl = "auto"
    c.optim = optim_block(
        learning_rate=3e-3, schedule="cosine", warmup_steps=30, total_steps=600, end_factor=0.1
    )
    c.eval = dict(
        every=0,
        num_problems=200,
        num_samples=4,
        temperature=1.0,
        batch_prompts=50,
        max_new_tokens=48,
    )
    c.log = dict(every=10)
    c.checkpoint = dict(every=200, keep=2, best_metric="", async_save=True)
    c.max_consecutive_skips = 5
    # Also write the final policy as an HF checkpoint under workdir/hf.
    c.export_hf = True
    if runlocal:
        c.steps = 4
        c.batch_size = 8
        c.optim.total_steps = 4
        c.optim.warmup_steps = 1
        c.eval.num_problems = 8
        c.eval.batch_prompts = 8
        c.checkpoint.every = 0
        c.log.every = 1
    return c


# Defaults of the non-SFT offline kinds that differ by kind: (objective, steps,
# learning rate, batch size). The rates are for a start from an SFT checkpoint
# (model.path), the recipe of benchmarks/reward_models.py.
_OFFLINE_KINDS = {
    # pair_weights: "" (w = 1), "margin" (w_i = the pair's margin) or "field:<key>"
    # (a numeric key of each JSONL record); L = Σ w_i·ℓ_i / Σ w_i.
    # target: q of adpo_anchored on ranked lists (data.format="lists"): "top1"
    # (one-hot on the best), "softmax_scores" (softmax(scores / target_temperature))
    # or "ranking" (q_k ∝ 1/rank_k); pairs are always "top1", q = (1, 0).
    "dpo": (
        dict(
            loss="dpo_sigmoid",
            kwargs=dict(beta=0.1),
            pair_weights="",
            target="top1",
            target_temperature=1.0,
        ),
        200,
        1e-5,
        32,
    ),
    "rm": (
        dict(loss="bt_pairwise", kwargs=dict(center_coef=0.0), margin_scale=0.0),
        1000,
        5e-4,
        32,
    ),
    "prm": (dict(loss="prm_step_bce", kwargs=dict(last_step_only=False)), 2000, 5e-4, 32),
    "implicit_prm": (dict(loss="implicit_prm", kwargs=dict(beta=0.05)), 300, 3e-4, 32),
}


def offline_base(kind: str, *, runlocal: bool = False) -> ml_collections.ConfigDict:
    """Every key the offline trainer reads for the dpo, rm, prm and implicit_prm kinds.

    Data: a JSONL file of the kind's format (data.train_path / test_path), or,
    when empty, records generated from the procedural task with exact labels.
    """
    if kind not in _OFFLINE_KINDS:
        raise ValueError(f"offline kind {kind!r}; known: {', '.join(sorted(_OFFLINE_KINDS))}")
    objective, steps, lr, batch_size = _OFFLINE_KINDS[kind]
    c = ml_collections.ConfigDict()
    c.trainer = "offline"
    c.seed = 0
    c.steps = steps
    # Pairs (dpo, rm) or solutions (prm, implicit_prm) per update.
    c.batch_size = batch_size
    c.microbatches = 1
    c.model = model_block()
    c.prompt = prompt_block()
    c.lora = lora_block()
    c.task = task_block("arithmetic_chain", num_steps=3, max_operand=9)
    c.objective = dict(kind=kind, **objective)
    # Device mesh: sizes of the data / fsdp / tensor axes, -1 = the rest.
    c.mesh = dict(data=-1, fsdp=1, tensor=1)
    c.data = dict(
        train_path="",
        test_path="",
        # The published format of train_path / test_path (rewardjax.data.published,
        # e.g. "ultrafeedback_binarized", "rewardbench", "math_shepherd", "processbench";
        # empty: the project's JSONL of the kind's format), and renames of its fields
        # for look-alike files ({"prompt": "question"}).
        reader="",
        reader_fields={},
        test_reader="",
        test_reader_fields={},
        # Generated records (train and held-out test split) when no path is given.
        num_train=16384,
        num_test=500,
        # Share of generated step-labelled solutions with an error (prm, implicit_prm).
        error_rate=0.5,
        prompt_length=16,
        completion_length=48,
        max_steps=8,
        step_separator="\n",
        # Training pairs of dpo and rm: "task" (generated: reference ≻ one
        # injected error; or train_path) or "policy" (the initial model's own
        # samples graded by the task, policy_samples per problem; one pair per
        # problem with both outcomes).
        pairs_from="task",
        policy_samples=8,
        policy_temperature=1.0,
        # dpo: "pairs" (preference_pairs) or "lists" (ranked_lists of list_size
        # candidates each, longer lists cut to their best list_size; adpo_anchored only).
        format="pairs",
        list_size=4,
        # rm with regression_rm / bt_plus_regression: rated responses (JSONL
        # "ratings"; generated when empty: correctness, progress, length) and the
        # attributes read from them, one reward-head output each
        # (model.overrides.reward_outputs = len(attributes)); output 0 is the reward.
        ratings_path="",
        ratings_test_path="",
        attributes=["correctness"],
    )
    # The frozen π_ref of dpo and implicit_prm: an HF directory, or empty for a
    # copy of the initial model. precompute: reference log-probs once for the
    # whole dataset before training; False: per batch, on the fly.
    c.reference = dict(path="", precompute=True)
    c.logprob_impl = "auto"
    c.optim = optim_block(
        learning_rate=lr, schedule="cosine", warmup_steps=20, total_steps=steps, end_factor=0.1
    )
    # every: evaluate every this many steps (0: only when asked); num_records:
    # held-out best-of-4 lists and solutions for the rm metrics; threshold: τ of
    # the ProcessBench first-error prediction; the rest: held-out pass@k (dpo).
    c.eval = dict(
        every=steps,
        num_records=300,
        threshold=0.5,
        num_problems=200,
        num_samples=4,
        temperature=1.0,
        batch_prompts=50,
        max_new_tokens=48,
    )
    c.log = dict(every=10)
    c.checkpoint = dict(every=200, keep=2, best_metric="", async_save=True)
    c.max_consecutive_skips = 5
    # Also write the final model (with its reward/prm head) as an HF checkpoint under workdir/hf.
    c.export_hf = True
    if runlocal:
        c.steps = 4
        c.batch_size = 8
        c.data.num_train = 64
        c.data.num_test = 16
        c.optim.total_steps = 4
        c.optim.warmup_steps = 1
        c.eval.every = 4
        c.eval.num_records = 16
        c.eval.num_problems = 8
        c.eval.batch_prompts = 8
        c.checkpoint.every = 0
        c.log.every = 1
    return c
