"""Every trainer with a `lora` block: adapters train, the base stays, the export folds them in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import (
    dpo_arithmetic,
    grpo_arithmetic,
    ppo_arithmetic,
    prm_arithmetic,
    rm_arithmetic,
    sft_arithmetic,
)
from rewardjax import models
from rewardjax.models import lora

# A dense shaping reward gives the untrained policy reward variance (nonzero advantages).
MOVING_RL_REWARDS = {
    "task_correct": {"weight": 1.0, "kwargs": {}},
    "dapo_overlong_penalty": {"weight": 1.0, "kwargs": {"max_length": 32, "cache_length": 31}},
}
KINDS = {
    "grpo": grpo_arithmetic,
    "ppo": ppo_arithmetic,
    "sft": sft_arithmetic,
    "dpo": dpo_arithmetic,
    "rm": rm_arithmetic,
    "prm": prm_arithmetic,
}


def _config(kind):
    c = KINDS[kind].get_config("runlocal=True")
    c.lora.rank, c.lora.alpha = 4, 8.0
    c.lora.targets = ["q_proj", "v_proj", "down_proj"]
    c.steps = 3
    c.optim.learning_rate = 1e-2
    c.optim.warmup_steps = 0
    c.checkpoint.every, c.checkpoint.async_save = 1, False
    c.eval.every = 0
    if c.trainer == "rl":
        c.rewards.sources = MOVING_RL_REWARDS
        c.kl.placement, c.kl.coef = "loss", 0.01
    return c


def _trainer(c, workdir):
    from rewardjax.training import offline, rl

    return (rl.RLTrainer if c.trainer == "rl" else offline.OfflineTrainer)(c, workdir)


def _flat(tree):
    return {
        jax.tree_util.keystr(path): np.asarray(x)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_lora_trains_adapters_only_and_exports_merged(kind, tmp_path):
    c = _config(kind)
    trainer = _trainer(c, str(tmp_path / "run"))
    before = _flat(trainer.state.params)
    base_size = sum(x.size for k, x in before.items() if "_lora" not in k)
    opt_size = sum(np.size(x) for x in jax.tree.leaves(trainer.state.opt_state))
    # Optimizer statistics of the adapters (and a new head) only.
    assert opt_size < 0.1 * base_size
    trainer.run()
    after = _flat(trainer.state.params)
    heads = ("value_head", "reward_head", "prm_head")
    for key, old in before.items():
        if "_lora" in key:
            continue
        if any(h in key for h in heads):
            continue
        np.testing.assert_array_equal(after[key], old, err_msg=key)
    assert any(not np.array_equal(after[k], before[k]) for k in before if "_lora']['b']" in k)
    # The export is a plain checkpoint with the adapters folded in.
    config, params = models.load_hf(str(tmp_path / "run" / "hf"))
    assert config.lora_rank == 0
    _, merged = lora.merge(trainer.model_config, trainer.state.params["policy"])
    for key, value in _flat(params).items():
        np.testing.assert_allclose(value, _flat(merged)[key], rtol=1e-6, atol=1e-7, err_msg=key)
    if kind == "grpo":
        # π_ref is the base: the first rollout comes from the policy before any
        # update, whose adapters are still zero, so its KL to π_ref is exactly 0.
        import json

        with open(tmp_path / "run" / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f]
        assert rows[0]["kl/ref_k1"] == 0.0 and rows[-1]["kl/ref_k1"] != 0.0


@pytest.mark.slow
def test_lora_run_resumes_to_the_same_adapters(tmp_path):
    c = _config("dpo")
    first = _trainer(c, str(tmp_path / "run"))
    first.run()
    saved = _flat(first.state)
    resumed = _trainer(c, str(tmp_path / "run"))
    assert int(resumed.state.step) == c.steps
    for key, value in _flat(resumed.state).items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)
    # The adapters were exported for PEFT too; a run started from that directory
    # (on the base checkpoint) begins with them.
    base_dir = str(tmp_path / "base")
    policy = first.state.params["policy"]
    models.save_hf(
        base_dir, lora.base_config(first.model_config), jax.device_get(lora.strip(policy))
    )
    started = _config("dpo")
    started.lora.rank, started.lora.adapter_path = 0, str(tmp_path / "run" / "peft")
    started.model.path = base_dir
    fresh = _trainer(started, str(tmp_path / "from_peft"))
    assert fresh.model_config.lora_targets == first.model_config.lora_targets
    loaded = _flat(fresh.state.params["policy"])
    for key, value in _flat(policy).items():
        if "_lora" in key:
            np.testing.assert_allclose(loaded[key], value, rtol=1e-6, err_msg=key)
    # A resume with other adapters is refused.
    other = _config("dpo")
    other.lora.rank = 8
    with pytest.raises(Exception, match="lora"):
        _trainer(other, str(tmp_path / "run"))


def test_merged_rollout_samples_what_the_adapted_policy_does(tmp_path):
    """lora.merge_for_rollout folds the adapters before sampling: same tokens, same log-probs."""
    from rewardjax.training.rollout import encode_prompts

    c = _config("grpo")
    trainer = _trainer(c, str(tmp_path / "run"))
    keys = iter(jax.random.split(jax.random.key(3), 64))
    policy = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            0.3 * jax.random.normal(next(keys), x.shape, x.dtype)
            if lora.is_adapter_path(path) and path[-1].key == "b"
            else x
        ),
        trainer.state.params["policy"],
    )
    trainer.state = trainer.state.replace(params={**trainer.state.params, "policy": policy})
    prompts = encode_prompts(trainer.tokenizer, trainer.source.test_problems(4))
    outs = {}
    for merged in (False, True):
        trainer.config.lora.merge_for_rollout = merged
        outs[merged] = trainer._sample(prompts, jax.random.key(7))
    np.testing.assert_array_equal(outs[True].tokens, outs[False].tokens)
    np.testing.assert_allclose(outs[True].logprobs, outs[False].logprobs, atol=1e-4)
    # The adapters matter: with B = 0 (the base's function) the samples differ.
    zeroed = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.zeros_like(x) if lora.is_adapter_path(path) else x, policy
    )
    trainer.state = trainer.state.replace(params={**trainer.state.params, "policy": zeroed})
    trainer.config.lora.merge_for_rollout = False
    base = trainer._sample(prompts, jax.random.key(7))
    assert not np.array_equal(base.tokens, outs[False].tokens)


def test_lora_dpo_on_the_fly_reference_is_the_states_base_not_a_copy(tmp_path):
    """reference.precompute=False with LoRA: reference log-probs from the state's base each step."""
    c = _config("dpo")
    c.reference.precompute = False
    trainer = _trainer(c, str(tmp_path / "run"))
    objective = trainer.objective
    assert objective.next_batch_reads_policy and objective.ref_params is None
    base = jax.tree.map(np.array, lora.strip(trainer.state.params["policy"]))
    trainer.train_step()
    trainer.train_step()  # the adapters have moved
    batch, _ = objective.next_batch(trainer.state.params["policy"])
    from_base = objective._sums(objective._ref_fn, base, batch)
    np.testing.assert_allclose(batch["ref_chosen"], from_base["chosen"], rtol=1e-5)
    np.testing.assert_allclose(batch["ref_rejected"], from_base["rejected"], rtol=1e-5)
    policy = objective._sums(objective._policy_fn, trainer.state.params["policy"], batch)
    assert not np.allclose(policy["chosen"], batch["ref_chosen"], rtol=1e-5)
    with pytest.raises(ValueError, match="current policy parameters"):
        objective.next_batch()
