"""The RL loop: every algorithm's runlocal config, compile counts, dynamic sampling, JSONL + HF."""

import json
import os
import re

import jax
import ml_collections
import numpy as np
import pytest

from configs import dapo_countdown, grpo_arithmetic, grpo_math_jsonl, ppo_arithmetic, rl_variants
from rewardjax import models, sampling
from rewardjax.registry import REWARDS
from rewardjax.rewards.base import register_reward
from rewardjax.tokenizers import CharTokenizer
from rewardjax.training import rl
from rewardjax.training.rl_loss import rl_loss_from_config
from rewardjax.training.step import batch_totals


def _finite_metrics(path):
    with open(path) as f:
        records = [json.loads(line) for line in f]
    assert records, "no metrics written"
    for r in records:
        for k, v in r.items():
            assert not isinstance(v, str), f"non-finite metric {k}={v}"
    return records


RUNLOCAL_CONFIGS = [
    ("grpo", lambda: grpo_arithmetic.get_config("runlocal=True,kl_coef=0.04")),
    ("dapo", lambda: dapo_countdown.get_config("runlocal=True")),
    ("ppo", lambda: ppo_arithmetic.get_config("runlocal=True")),
    ("dr_grpo", lambda: rl_variants.get_config("runlocal=True,algo=dr_grpo")),
    ("gspo", lambda: rl_variants.get_config("runlocal=True,algo=gspo")),
    ("rloo", lambda: rl_variants.get_config("runlocal=True,algo=rloo")),
    ("reinforce_pp", lambda: rl_variants.get_config("runlocal=True,algo=reinforce_pp")),
    ("remax", lambda: rl_variants.get_config("runlocal=True,algo=remax")),
    ("cispo", lambda: rl_variants.get_config("runlocal=True,algo=cispo")),
    ("gmpo", lambda: rl_variants.get_config("runlocal=True,algo=gmpo")),
    ("prime", lambda: rl_variants.get_config("runlocal=True,algo=prime")),
]


def test_every_rl_variant_trains_end_to_end_below():
    # A variant added to configs/rl_variants.py needs its entry in RUNLOCAL_CONFIGS.
    assert set(rl_variants.VARIANTS) <= {name for name, _ in RUNLOCAL_CONFIGS}


@pytest.mark.parametrize("name,config_fn", RUNLOCAL_CONFIGS)
@pytest.mark.slow
def test_runlocal_configs_train(name, config_fn, tmp_path):
    c = config_fn()
    c.steps = 2
    # A random policy solves nothing, so every group-relative advantage would
    # be 0; a coin-flip reward gives the update something to move.
    c.rewards.sources["test_coin_flip"] = dict(weight=1.0, kwargs={})
    if name == "dapo":
        # A random policy rarely solves countdown, so every group would be
        # dropped; the refill itself is tested below.
        c.curation.dynamic_sampling = False
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    before = jax.tree.map(np.asarray, trainer.state.params)
    trainer.run()
    records = _finite_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["step"] == 2
    assert "train/loss" in records[-1] and "rollout/logp_gap_mean" in records[-1]
    # The sampler's and the trainer's log-probs describe the same policy.
    assert records[0]["rollout/logp_gap_mean"] < 1e-4
    after = jax.tree.map(np.asarray, trainer.state.params)
    changed = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after))
    assert any(changed), "no parameter moved"
    if name == "ppo":
        assert "critic" in after and "train/critic/value_loss" in records[-1]
    if name == "grpo":
        assert "train/kl_ref" in records[-1]
    if name == "prime":
        assert records[-1]["prime/param_distance"] > 0  # the implicit PRM trained too
    assert os.listdir(tmp_path / "checkpoints")


def test_update_compiles_once_over_20_steps(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 20
    c.updates.minibatches = 2
    c.log.samples_every = 0
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    trainer.run()
    assert trainer.step == 20
    # Prompt lengths of the task fall into one bucket: one compiled update
    # step and one compiled log-prob pass for the whole run.
    assert trainer.update_fn._cache_size() == 1
    assert trainer._logprob_fn._cache_size() == 1


@register_reward("test_coin_flip")
def _coin_flip(prompts, completions, fields, **kwargs):
    # A reward with variance inside most groups but not all: about 1 group in
    # 2^(G-1) is constant and must be dropped and refilled.
    return [float(hash((c, i)) % 2) for i, c in enumerate(completions)]


def test_dynamic_sampling_refills_batch(tmp_path, monkeypatch):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rollout.group_size = 2  # half of the groups are constant
    c.rollout.prompts_per_step = 8
    c.curation.dynamic_sampling = True
    c.curation.max_rounds = 20
    c.rewards.sources = {"test_coin_flip": dict(weight=1.0, kwargs={})}
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    batch, _, metrics = trainer.collect()
    assert batch["rewards"].shape == (16,)
    groups = batch["rewards"].reshape(8, 2)
    assert np.all(groups.std(axis=1) > 0), "a zero-variance group survived"
    assert metrics["rollout/rounds"] >= 2
    assert metrics["rollout/dropped_group_frac"] > 0


def test_dynamic_sampling_gives_up_with_a_clear_error(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.curation.dynamic_sampling = True
    c.curation.max_rounds = 2
    # A random policy never solves the task: every group is all-zero.
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    with pytest.raises(RuntimeError, match="max_rounds=2"):
        trainer.collect()


def test_batch_must_divide_into_minibatches(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.updates.minibatches = 3  # 16 rows
    with pytest.raises(ValueError, match=r"16 rows do not divide into updates.minibatches=3"):
        rl.RLTrainer(c, str(tmp_path))


def test_mistyped_config_key_fails():
    c = grpo_arithmetic.get_config("runlocal=True")
    c.lock()
    with pytest.raises(AttributeError):
        c.rollout.group_sise = 4
    with pytest.raises(KeyError, match="unknown config argument 'runlcoal'"):
        grpo_arithmetic.get_config("runlcoal=True")


def test_jsonl_prompts_and_hf_checkpoint(tmp_path):
    tok = CharTokenizer()
    config = models.preset("tiny", vocab_size=tok.vocab_size)
    params = models.init_params(config, jax.random.key(0))
    model_dir = str(tmp_path / "model")
    models.save_hf(model_dir, config, params)
    rows = [{"prompt": f"Q: {a}+{b}\n", "answer": str(a + b)} for a in range(5) for b in range(4)]
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(json.dumps(r) for r in rows[:6]) + "\n")
    c = grpo_math_jsonl.get_config(
        f"runlocal=True,model_path={model_dir},data_path={data},test_path={test},tokenizer=char"
    )
    c.steps = 2
    c.eval.every = 2
    c.eval.num_problems = 6
    c.eval.batch_prompts = 6
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path / "run"))
    assert trainer.model_config.vocab_size == tok.vocab_size
    trainer.run()
    records = _finite_metrics(tmp_path / "run" / "metrics.jsonl")
    assert "eval/pass@1" in records[-1]
    # Both training prompts seen are rows of the file.
    prompts = {json.loads(line)["prompt"] for line in open(tmp_path / "run" / "samples.jsonl")}
    assert prompts <= {r["prompt"] for r in rows}


def test_jsonl_missing_field_names_file_and_line(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "Q: 1+1\\n", "answer": "2"}\n{"prompt": "Q: 2+2\\n"}\n')
    c = grpo_math_jsonl.get_config(f"runlocal=True,data_path={data},tokenizer=char")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        rl.RLTrainer(c, str(tmp_path / "run"))


def test_empty_jsonl_is_an_error(tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    c = grpo_math_jsonl.get_config(f"runlocal=True,data_path={data},tokenizer=char")
    with pytest.raises(ValueError, match="empty"):
        rl.RLTrainer(c, str(tmp_path / "run"))


@register_reward("test_sometimes_raises")
def _sometimes_raises(prompts, completions, fields, **kwargs):
    out = []
    for c in completions:
        if c.startswith("raise"):
            raise RuntimeError("grader crashed")
        out.append(float("nan") if c.startswith("nan") else 1.0)
    return out


def test_reward_failures_get_fallback_and_are_counted(tmp_path):
    assert "test_sometimes_raises" in REWARDS
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rewards.sources = {
        "task_correct": dict(weight=1.0, kwargs={}),
        "test_sometimes_raises": dict(weight=0.5, kwargs={}),
    }
    c.rewards.fallback = -1.0
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    problem = trainer.task.problem(0)
    completions = [problem.reference_completion, "raise", "nan", "7"]
    scores, info = trainer.rewards(
        [problem] * 4, completions, lengths=np.array([10, 5, 3, 1]), truncated=np.zeros(4, bool)
    )
    # correct + 0.5·1; wrong + 0.5·fallback (exception); wrong + 0.5·fallback (NaN); wrong + 0.5·1
    np.testing.assert_allclose(scores, [1.5, -0.5, -0.5, 0.5])
    assert info["correct"].tolist() == [True, False, False, False]
    assert info["stats"]["fallbacks/test_sometimes_raises/exception"] == 1
    assert info["stats"]["fallbacks/test_sometimes_raises/nonfinite"] == 1


def test_sampler_compiles_once_per_bucket():
    tok = CharTokenizer()
    config = models.preset("tiny", vocab_size=tok.vocab_size)
    params = models.init_params(config, jax.random.key(0))
    before = sampling.sampler._generate_jit._cache_size()
    for prompts in (["Q: 1+2\n"] * 2, ["Q: 11+22-3\n"] * 2):
        ids = [tok.encode(p) for p in prompts]
        sampling.generate(config, params, ids, rng=jax.random.key(0), max_new_tokens=5)
    assert sampling.sampler._generate_jit._cache_size() - before == 1


def test_bad_kl_placement(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.kl.placement = "both"
    with pytest.raises(ValueError, match=r"kl.placement='both'"):
        rl.RLTrainer(c, str(tmp_path))


# The presets table of mechanisms.md §0, written out by hand: (advantage,
# loss, clip_low, clip_high, aggregation, KL placement, KL estimator, KL β);
# None where the table leaves the value to the base config or the loss default.
PRESETS = {
    "grpo": (
        lambda: grpo_arithmetic.get_config("kl_coef=0.04"),
        ("grpo_group_norm", "ppo_clip", 0.2, 0.2, "seq_mean_token_mean", "loss", "kl_k3", 0.04),
    ),
    "dapo": (
        lambda: dapo_countdown.get_config(),
        ("grpo_group_norm", "ppo_clip", 0.2, 0.28, "token_mean", "none", None, None),
    ),
    "dr_grpo": (
        lambda: rl_variants.get_config("algo=dr_grpo"),
        (
            "drgrpo_group_center",
            "ppo_clip",
            None,
            None,
            "seq_mean_token_sum_norm",
            "none",
            None,
            None,
        ),
    ),
    "ppo": (
        lambda: ppo_arithmetic.get_config(),
        ("gae", "ppo_clip", 0.2, 0.2, "token_mean", "reward", "kl_k1", 0.001),
    ),
    "rloo": (
        lambda: rl_variants.get_config("algo=rloo"),
        ("rloo", "ppo_clip", 0.2, 0.2, "seq_mean_token_mean", "reward", "kl_k1", 0.05),
    ),
    "reinforce_pp": (
        lambda: rl_variants.get_config("algo=reinforce_pp"),
        ("reinforce_pp_baseline", "ppo_clip", 0.2, 0.2, "token_mean", "reward", "kl_k1", 0.001),
    ),
    "remax": (
        lambda: rl_variants.get_config("algo=remax"),
        ("remax", "ppo_clip", 0.2, 0.2, "seq_mean_token_mean", "reward", "kl_k1", 0.001),
    ),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_is_the_preset_of_the_mechanisms_table(name):
    config_fn, expected = PRESETS[name]
    c = config_fn()
    assert isinstance(c, ml_collections.ConfigDict)
    advantage, loss, clip_low, clip_high, aggregation, placement, estimator, beta = expected
    assert c.advantage.name == advantage and c.loss.name == loss
    if clip_low is not None:
        assert (c.loss.kwargs.clip_low, c.loss.kwargs.clip_high) == (clip_low, clip_high)
    assert c.loss.aggregation == aggregation
    if placement is not None:
        assert c.kl.placement == placement
    if estimator is not None:
        assert (c.kl.estimator, c.kl.coef) == (estimator, beta)
    if name == "ppo":
        # GAE with γ = λ = 1 (verl, OpenRLHF).
        assert (c.advantage.kwargs.gamma, c.advantage.kwargs.lam) == (1.0, 1.0)
    if name == "dapo":
        assert c.curation.dynamic_sampling
        assert "dapo_overlong_penalty" in c.rewards.sources


@pytest.mark.xdist_group(name="sandbox")
def test_code_reward_runlocal(tmp_path):
    from configs import grpo_code

    c = grpo_code.get_config("runlocal=True")
    c.steps = 1
    c.rollout.prompts_per_step = 2
    c.rollout.group_size = 2
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    problem = trainer.task.problem(0)
    # The reward really executes code: the reference body passes, a wrong one fails.
    scores, _ = trainer.rewards(
        [problem] * 2,
        [problem.answer, "x"],
        lengths=np.array([5, 1]),
        truncated=np.zeros(2, bool),
    )
    np.testing.assert_array_equal(scores, [1.0, 0.0])
    trainer.run()
    records = _finite_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["step"] == 1


def test_zero_variance_mask_mode_drops_constant_groups(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 1
    c.curation.zero_variance = "mask"
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    before = jax.tree.map(np.asarray, trainer.state.params)
    metrics = trainer.train_step()
    # A random policy solves nothing: every group is constant, so every row is
    # masked out and the update has nothing to learn from.
    assert metrics["reward/mean"] == 0.0
    assert float(metrics["rollout/zero_std_row_frac"]) == 1.0
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(trainer.state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))


@pytest.mark.slow
def test_rl_trains_on_a_two_device_mesh(tmp_path):
    """The trainer's sharded path: params, optimizer state, batches and KV cache on 2 fake devices."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(
        os.environ,
        PYTHONPATH=root,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=configs/grpo_arithmetic.py:runlocal=True",
        f"--workdir={tmp_path}",
        "--config.steps=2",
        "--config.mesh.data=2",
        "--config.checkpoint.every=0",
    ]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = _finite_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["step"] == 2


# Run with 3 fake devices, so that a mesh of data=3 is valid and only the
# batch can fail to divide over it.
_MESH_OF_THREE = """
import json, tempfile
from configs import grpo_arithmetic
from rewardjax.training import rl

out = {}
for name, prompts, microbatches in (("fits", 3, 1), ("rows", 4, 1), ("micro", 3, 3)):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.mesh.data = 3
    c.rollout.prompts_per_step = prompts  # × group_size 4 rows
    c.microbatches = microbatches
    try:
        rl.RLTrainer(c, tempfile.mkdtemp())
        out[name] = "ok"
    except ValueError as e:
        out[name] = str(e)
print(json.dumps(out))
"""


def test_mesh_that_does_not_fit_the_batch_is_an_error():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(
        os.environ,
        PYTHONPATH=root,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=3",
    )
    result = subprocess.run(
        [sys.executable, "-c", _MESH_OF_THREE],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.splitlines()[-1])
    # 3 prompts × 4 = 12 rows split over 3 shards: the mesh itself is fine.
    assert out["fits"] == "ok", out
    # 16 rows do not; 12 rows do, but their 3 micro-batches of 4 rows do not.
    mesh = re.escape("mesh {'data': 3, 'fsdp': 1, 'tensor': 1}")
    assert re.fullmatch(
        rf"micro-batches of 16 rows do not divide over the 3 data-parallel shards of {mesh}",
        out["rows"],
    ), out
    assert re.fullmatch(
        rf"micro-batches of 4 rows do not divide over the 3 data-parallel shards of {mesh}",
        out["micro"],
    ), out


def test_batch_must_split_into_microbatches(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.microbatches = 3  # 16 rows, one minibatch
    with pytest.raises(
        ValueError, match=r"^a batch of 16 rows does not split into microbatches=3$"
    ):
        rl.RLTrainer(c, str(tmp_path))


def test_sampler_settings_from_the_config(tmp_path, monkeypatch):
    # rollout.cache_block and rollout.compact_min_rows reach the sampler; a block
    # that does not divide the completion bucket fails when the trainer starts.
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rollout.cache_block = 5
    with pytest.raises(ValueError, match=r"rollout.cache_block=5 must divide the completion"):
        rl.RLTrainer(c, str(tmp_path / "bad"))
    c.rollout.cache_block = 4
    c.rollout.compact_min_rows = 2
    trainer = rl.RLTrainer(c, str(tmp_path / "good"))
    seen = {}
    real = sampling.generate

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "generate", spy)
    trainer.collect()
    assert seen["cache_block"] == 4 and seen["compact_min_rows"] == 2


@pytest.mark.slow
def test_shared_prompt_update_equals_per_row_update(tmp_path):
    """updates.shared_prompt (each prompt run once per group) gives the same loss and gradient."""

    def trainer(shared, path):
        c = grpo_arithmetic.get_config("runlocal=True")
        c.updates.shared_prompt = shared
        c.updates.shuffle = False
        c.log.samples_every = 0
        c.lock()
        return rl.RLTrainer(c, str(path))

    shared, per_row = trainer(True, tmp_path / "a"), trainer(False, tmp_path / "b")
    assert shared.prompt_group == 4 and per_row.prompt_group == 1
    batch, _, _ = shared.collect()
    # Rewards with variance in every group, so that the loss has a gradient.
    batch["rewards"] = np.random.default_rng(0).normal(size=16).astype(np.float32)
    params = jax.tree.map(np.asarray, shared.state.params)  # the update donates the state

    def value_and_grad(t, device):
        loss = rl_loss_from_config(t.config, t.policy, None, logprob_impl=t.config.logprob_impl)
        totals = batch_totals(device)
        return jax.value_and_grad(lambda p: loss(p, device, None, totals)[0])(params)

    out = []
    for t in (shared, per_row):
        device, _ = t.prepare(batch)
        value, grad = value_and_grad(t, device)
        out.append((float(value), grad))
        assert float(t.update(device, {"kl_coef": 0.0})["grad_norm"]) > 0
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-6)
    for a, b in zip(jax.tree.leaves(out[0][1]), jax.tree.leaves(out[1][1])):
        np.testing.assert_allclose(a, b, atol=1e-4 * float(np.max(np.abs(b))) + 1e-9)


def test_shared_prompt_needs_passes_of_whole_groups(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.updates.minibatches = 8  # 16 rows: minibatches of 2 rows split groups of 4
    with pytest.raises(ValueError, match=r"updates.minibatches gives passes of 2 rows"):
        rl.RLTrainer(c, str(tmp_path))
    c.updates.shared_prompt = False
    rl.RLTrainer(c, str(tmp_path / "b"))


@register_reward("test_length")
def _length_reward(prompts, completions, fields, **kwargs):
    return [len(c) / 32.0 for c in completions]


def test_remax_baseline_is_the_reward_of_a_greedy_rollout(tmp_path):
    c = rl_variants.get_config("runlocal=True,algo=remax")
    c.rewards.sources = {"test_length": dict(weight=1.0, kwargs={})}
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    assert trainer.greedy_baseline
    state = jax.tree.map(np.asarray, trainer.state.params)
    batch, problems, _ = trainer.collect()
    # The baseline: one greedy completion per prompt, scored by the same reward.
    tokens, mask = rl.encode_prompts(trainer.tokenizer, [p.prompt for p in problems])
    greedy = sampling.generate(
        trainer.model_config,
        state["policy"],
        (tokens, mask),
        rng=jax.random.key(0),
        n=1,
        max_new_tokens=c.rollout.max_new_tokens,
        temperature=0.0,
        eos_ids=trainer.tokenizer.stop_ids,
        pad_id=trainer.tokenizer.pad_id,
    )
    texts = rl.decode_completions(trainer.tokenizer, greedy.tokens, greedy.lengths)
    expected = np.repeat([len(t) / 32.0 for t in texts], c.rollout.group_size)
    np.testing.assert_allclose(batch["baseline_rewards"], expected, rtol=1e-6)
    device, metrics = trainer.prepare(batch)
    assert "rollout/greedy_reward_mean" in metrics
    # A_t = reward-to-go − b; the KL in the reward is 0 while the policy is π_ref.
    assert np.ptp(batch["rewards"] - expected) > 0
    np.testing.assert_allclose(
        device["advantages"][:, 0], batch["rewards"] - expected, rtol=1e-5, atol=1e-6
    )


def test_prompt_stats_are_kept_and_checkpointed(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.steps = 2
    c.checkpoint.every = 1
    c.checkpoint.async_save = False
    c.log.samples_every = 0
    c.export_hf = False
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    trainer.run()
    stats = trainer.prompt_stats
    # 2 steps × 4 prompts, each prompt's 4 samples counted.
    assert len(stats) == 8 and all(stats.get(u)["samples"] == 4 for u in stats.state_dict())
    records = _finite_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["prompts/prompts_seen"] == 8.0
    resumed = rl.RLTrainer(c, str(tmp_path))
    assert resumed.step == 2
    assert resumed.prompt_stats.state_dict() == stats.state_dict()


@register_reward("test_length_parity")
def _length_parity(prompts, completions, fields, **kwargs):
    # Deterministic for a seeded rollout (unlike a salted hash): about half of
    # the groups of 2 have reward variance.
    return [float(len(c) % 2) for c in completions]


def test_oversampling_fills_the_batch_from_extra_prompts(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rollout.group_size = 2  # half of the groups have no reward variance
    c.rewards.sources = {"test_length_parity": dict(weight=1.0, kwargs={})}
    c.curation.dynamic_sampling = True
    c.curation.oversample = 4
    c.curation.max_rounds = 1  # one round of 16 prompts must yield the 4 groups
    trainer = rl.RLTrainer(c, str(tmp_path / "a"))
    batch, problems, metrics = trainer.collect()
    assert batch["rewards"].shape == (8,) and len(problems) == 4
    assert np.all(batch["rewards"].reshape(4, 2).std(axis=1) > 0)
    assert metrics["rollout/rounds"] == 1
    assert len(trainer.prompt_stats) == 16  # every sampled prompt is remembered
    c.curation.dynamic_sampling = False
    with pytest.raises(ValueError, match=r"curation.oversample=4 samples extra prompts"):
        rl.RLTrainer(c, str(tmp_path / "b"))


@register_reward("testonly_half_unscorable")
def _half_unscorable(prompts, completions, fields, **kwargs):
    # NaN (unscorable) on odd-length completions, the length parity otherwise.
    return [float("nan") if len(c) % 2 else 1.0 for c in completions]


def test_reward_shaping_gates_and_unscorable_rows_in_the_rl_loop(tmp_path):
    c = grpo_arithmetic.get_config("runlocal=True")
    c.rewards.sources = {
        "task_correct": dict(weight=1.0, kwargs={}),
        "test_length_parity": dict(weight=0.5, kwargs={}, gate="task_correct"),
        "testonly_half_unscorable": dict(weight=1.0, kwargs={}),
    }
    c.rewards.unscorable = "exclude"
    c.rewards.shaping = [dict(name="reward_clip", low=0.0, high=0.75)]
    c.steps = 1
    c.lock()
    trainer = rl.RLTrainer(c, str(tmp_path))
    batch, _, metrics = trainer.collect()
    valid = batch["valid"]
    assert 0 < valid.sum() < len(valid) and metrics["reward/unscorable_frac"] > 0
    # A random policy is never right: the gated parity reward never counts, and the
    # clip caps the rest (1.0 → 0.75); unscorable rows score 0.
    np.testing.assert_allclose(batch["rewards"], np.where(valid, 0.75, 0.0))
    device, prep = trainer.prepare(batch)
    assert np.all(np.asarray(device["advantages"])[~valid] == 0)
    assert prep["rollout/unscorable_frac"] == pytest.approx(1 - valid.mean())
    trainer.run()
