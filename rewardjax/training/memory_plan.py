"""Memory plan: compile the sharded update step ahead of time and read its bytes per device.

Nothing is allocated: parameters, optimizer state and the batch are abstract
shapes (`jax.eval_shape`), the update step is lowered and compiled for the
mesh, and XLA's memory analysis of the compiled step gives the activations and
temporaries per device. The loss is the trainers' own: `make_sft_loss` for an
SFT-shaped step, `make_rl_loss` for a GRPO step, built from the config's
blocks when a config is given.

  mesh = parallel.make_mesh(data=1, fsdp=8, tensor=1)
  row = plan_update_step(
      models.preset("qwen2.5-0.5b"), name="qwen2.5-0.5b", mesh=mesh, objective="sft",
      rows=16, seq_len=1024, prompt_len=256, microbatches=1,
      optimizer=make_optimizer(learning_rate=1e-5), logprob_impl="auto",
  )
  print(format_plan_table([row]))

`plan_sampler` does the same for the RL loop's sampler (`sampling.generate`:
prefill, KV cache repeated to P·n rows, decode loops compacting finished
rows): it compiles `_generate_jit` on abstract inputs and sets XLA's figure
next to an analytic prediction (KV cache and the largest phase's
temporaries), so a rollout's memory can be checked against what the plan
predicts:

  s = plan_sampler(models.preset("qwen2.5-0.5b"), mesh=mesh, prompts=16, samples=8,
                   prompt_len=256, max_new_tokens=1024)
  print(format_sampler_table([s]))

`experiments/plan.py` is the command line (`print_memory_plan`). The figures
come from the compiler of the mesh's devices; XLA's CPU compiler (fake CPU
devices) fuses differently from the TPU and GPU compilers, so read its
temporaries as an estimate. Parameter and optimizer bytes are exact. This
module imports the trainers' loss builders, so `rewardjax.parallel` does not
re-export it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from rewardjax import models
from rewardjax.models import hf, lora
from rewardjax.parallel.mesh import MESH_AXES, describe, make_mesh, parse_mesh
from rewardjax.parallel.rules import (
    batch_parallelism,
    batch_sharding,
    check_batch,
    jit_step,
    kv_cache_sharding,
    param_shardings,
    replicated,
    state_shardings,
)
from rewardjax.sampling.sampler import (
    DEFAULT_BUCKETS,
    SamplingParams,
    _generate_jit,
    bucket,
    default_cache_block,
    row_capacities,
)
from rewardjax.training.kinds.sft import make_sft_loss
from rewardjax.training.optim import make_optimizer
from rewardjax.training.rl_loss import make_rl_loss, rl_loss_from_config
from rewardjax.training.step import TrainState, make_update_step
from rewardjax.training.step_time import step_seconds

__all__ = [
    "OBJECTIVES",
    "REAL_PRESETS",
    "PlanError",
    "abstract_batch",
    "bytes_per_device",
    "format_plan_table",
    "format_sampler_table",
    "kv_cache_bytes",
    "plan_memory",
    "plan_sampler",
    "plan_update_step",
    "print_memory_plan",
    "resolve_model_config",
    "update_loss",
]

REAL_PRESETS = "qwen2.5-0.5b,qwen2.5-1.5b,llama-3.2-1b"
# sft: a log-likelihood step, the memory profile of every offline kind;
# grpo: the policy loss over rollouts.
OBJECTIVES = ("sft", "grpo")
# Pairwise kinds: chosen and rejected rows go through the model together.
_PAIRWISE_KINDS = ("dpo", "rm")


class PlanError(ValueError):
    """A plan request that cannot be met (mesh, batch or lengths); the message names the flag."""


def resolve_model_config(
    name: str,
    model_block: Any = None,
    *,
    dtype: str = "",
    param_dtype: str = "",
    remat: str = "",
) -> models.ModelConfig:
    """The model config of a preset name or of a config's `model` block, with overrides.

    Args:
      name: a preset name (used when `model_block` is None).
      model_block: a config's `model` block: `path` (an HF directory, its
        `config.json` read) or `preset`, with `dtype`, `remat`, `overrides`.
      dtype, param_dtype, remat: replace the resolved values where non-empty.

    Returns:
      The `ModelConfig`; only `config.json` is read, never the weights.
    """
    if model_block is not None and model_block.path:
        path = os.path.join(model_block.path, "config.json")
        with open(path, encoding="utf-8") as f:
            cfg = hf.config_from_hf(json.load(f), source=path, dtype=model_block.dtype)
        cfg = cfg.replace(remat=model_block.remat, **dict(model_block.overrides or {}))
    elif model_block is not None:
        cfg = models.preset(
            model_block.preset,
            dtype=model_block.dtype,
            param_dtype=model_block.dtype,
            remat=model_block.remat,
            **dict(model_block.overrides or {}),
        )
    else:
        cfg = models.preset(name)
    changes = {}
    if dtype:
        changes["dtype"] = dtype
    if param_dtype:
        changes["param_dtype"] = param_dtype
    if remat:
        changes["remat"] = remat
    return cfg.replace(**changes) if changes else cfg


def _is_rl(config: Any) -> bool:
    return config is not None and config.trainer == "rl"


def _kl_in_loss(objective: str, config: Any) -> bool:
    return objective == "grpo" and _is_rl(config) and config.kl.placement == "loss"


def _with_laser(objective: str, config) -> bool:
    """An RL config with LaSeR's last-token term (its batch carries the verifier rewards)."""
    return objective == "grpo" and _is_rl(config) and bool(config.laser.enabled)


def holds_reference(config: Any) -> bool:
    """Whether the trainer keeps a frozen copy of the initial policy through training.

    RL with a KL term or PRIME, and DPO with reference log-probs computed per
    batch, do; with LoRA the reference is the base the state already holds.
    """
    if config is None or ("lora" in config and config.lora.rank):
        return False
    if _is_rl(config):
        return config.kl.placement != "none" or bool(config.prime.enabled)
    return config.objective.kind == "dpo" and not config.reference.precompute


def _with_critic(objective: str, config: Any) -> bool:
    return objective == "grpo" and _is_rl(config) and bool(config.critic.enabled)


def update_loss(
    objective: str,
    policy: models.Decoder,
    critic: models.Decoder | None = None,
    *,
    config: Any = None,
    logprob_impl: str = "auto",
):
    """The loss `(params, mb, rng, totals) -> (loss, metrics)` the trainer would build.

    Args:
      objective: "sft" (`make_sft_loss`) or "grpo" (`make_rl_loss`).
      policy: the policy module.
      critic: the value module (an RL config with `critic.enabled`), else None.
      config: an experiment config or None. An RL config gives the GRPO loss
        its `loss`, `kl`, `entropy_coef`, `critic` and `rollout.temperature`;
        an SFT config gives the SFT loss its `objective.loss` / `kwargs`.
        Without one (or for another kind): `ppo_clip` with clip 0.2 and no KL,
        or `sft_nll`.
      logprob_impl: the token log-prob kernel choice.
    """
    if objective not in OBJECTIVES:
        raise PlanError(f"objective={objective!r}; known: {', '.join(OBJECTIVES)}")
    if objective == "sft":
        if config is not None and config.trainer != "rl" and config.objective.kind == "sft":
            name, kwargs = config.objective.loss, dict(config.objective.kwargs)
        else:
            name, kwargs = "sft_nll", {}
        return make_sft_loss(policy, loss_name=name, loss_kwargs=kwargs, logprob_impl=logprob_impl)
    if _is_rl(config):
        # LaSeR's token id does not change the memory: any id stands in for it.
        return rl_loss_from_config(config, policy, critic, logprob_impl=logprob_impl, laser_token=0)
    return make_rl_loss(
        policy,
        None,
        loss_name="ppo_clip",
        loss_kwargs=dict(clip_low=0.2, clip_high=0.2),
        aggregation="seq_mean_token_mean",
        temperature=1.0,
        kl_placement="none",
        kl_estimator="kl_k3",
        entropy_coef=0.0,
        value_coef=0.0,
        value_clip=None,
        logprob_impl=logprob_impl,
    )


def abstract_batch(
    objective: str,
    rows: int,
    prompt_len: int,
    length: int,
    *,
    ref_logprobs: bool = False,
    critic: bool = False,
    laser: bool = False,
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one update's batch: prompt [rows, prompt_len], completion [rows, length].

    GRPO adds old / rollout log-probs and advantages [rows, length];
    `ref_logprobs` (KL in the loss) and `critic` (old values, returns) add
    their [rows, length] float32 inputs, `laser` the [rows] verifier rewards.
    """
    i32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.int32)  # noqa: E731
    f32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
    batch = dict(
        prompt_tokens=i32(rows, prompt_len),
        prompt_mask=i32(rows, prompt_len),
        tokens=i32(rows, length),
        mask=f32(rows, length),
    )
    if objective == "grpo":
        batch.update(
            old_logprobs=f32(rows, length),
            rollout_logprobs=f32(rows, length),
            advantages=f32(rows, length),
        )
        if ref_logprobs:
            batch["ref_logprobs"] = f32(rows, length)
        if critic:
            batch.update(old_values=f32(rows, length), returns=f32(rows, length))
        if laser:
            batch["verifier_rewards"] = f32(rows)
    return batch


def bytes_per_device(abstract: Any, shardings: Any) -> int:
    """Bytes of one device's shard of each leaf of `abstract`, summed."""

    def one(x, s):
        return math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize

    return int(sum(jax.tree.leaves(jax.tree.map(one, abstract, shardings))))


def _with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )


def plan_update_step(
    cfg: models.ModelConfig,
    *,
    name: str,
    mesh: Mesh,
    objective: str,
    rows: int,
    seq_len: int,
    prompt_len: int,
    microbatches: int,
    optimizer: optax.GradientTransformation,
    logprob_impl: str,
    config: Any = None,
) -> dict[str, Any]:
    """Compiles one update step on abstract inputs; returns its per-device byte counts.

    Args:
      cfg: the policy's model config.
      name: the model's name in the result.
      mesh: the mesh to compile for.
      objective: "sft" or "grpo" (see `update_loss`).
      rows: global batch rows of one update; seq_len: prompt plus completion
        tokens per row, of which `prompt_len` are prompt.
      microbatches: gradient-accumulation steps.
      optimizer: the optimizer whose state is planned.
      logprob_impl: the token log-prob kernel choice.
      config: the experiment config the loss is built from, or None (see
        `update_loss`); an RL config with `critic.enabled` plans the critic's
        parameters too.

    Returns:
      {model, num_params, mesh, objective, batch, seq_len, microbatches,
      dtype, param_dtype, remat, params_bytes, optimizer_bytes, batch_bytes,
      temp_bytes, argument_bytes, output_bytes, alias_bytes, peak_bytes}, the
      bytes per device; peak = arguments + outputs − aliased (donated) + temp.
    """
    if not 0 < prompt_len < seq_len:
        raise PlanError(f"--prompt_len={prompt_len} must lie in (0, --seq_len={seq_len})")
    with_critic = _with_critic(objective, config)
    batch = abstract_batch(
        objective,
        rows,
        prompt_len,
        seq_len - prompt_len,
        ref_logprobs=_kl_in_loss(objective, config),
        critic=with_critic,
        laser=_with_laser(objective, config),
    )
    check_batch(batch, mesh)
    heads = {"policy": ("lm",), **({"critic": ("value",)} if with_critic else {})}
    axes = {k: models.logical_axes(cfg, h) for k, h in heads.items()}
    abstract_params = jax.eval_shape(
        lambda key: {k: models.init_params(cfg, key, h) for k, h in heads.items()},
        jax.random.key(0),
    )
    # LoRA: gradients and optimizer state of the adapters (and new heads) only.
    trainable = lora.trainable_mask(abstract_params) if cfg.lora_rank else None
    abstract_state = jax.eval_shape(
        lambda key: TrainState.create(
            {k: models.init_params(cfg, key, h) for k, h in heads.items()}, optimizer, trainable
        ),
        jax.random.key(0),
    )
    shardings = state_shardings(abstract_state, mesh, axes)
    loss = update_loss(
        objective,
        models.build(cfg),
        models.build(cfg, ("value",)) if with_critic else None,
        config=config,
        logprob_impl=logprob_impl,
    )
    update = make_update_step(loss, optimizer, microbatches=microbatches, trainable=trainable)
    rows_sharding = batch_sharding(mesh)
    step = jit_step(update, mesh, shardings, rows_sharding)
    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated(mesh))
    # β reaches the loss as a step scalar, as in the RL trainer's updates (the
    # step converts it to a replicated float32; its value does not matter here).
    scalars = {"kl_coef": 0.0} if objective == "grpo" else None
    if _with_laser(objective, config):
        scalars["laser_ref_constant"] = 0.0
    lowered = step.lower(
        _with_shardings(abstract_state, shardings),
        jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rows_sharding), batch
        ),
        rng,
        scalars,
    )
    memory = lowered.compile().memory_analysis()
    params = bytes_per_device(abstract_state.params, shardings.params)
    opt = bytes_per_device(abstract_state.opt_state, shardings.opt_state)
    prime = 0
    if _is_rl(config) and config.prime.enabled:
        # PRIME's ψ (prime.OnlinePRM): a full copy of the policy and its own
        # optimizer state, every leaf trained, resident for the whole run.
        psi = jax.eval_shape(
            lambda key: TrainState.create({"policy": models.init_params(cfg, key)}, optimizer),
            jax.random.key(0),
        )
        psi_shardings = state_shardings(psi, mesh, {"policy": axes["policy"]})
        prime = bytes_per_device(psi.params, psi_shardings.params) + bytes_per_device(
            psi.opt_state, psi_shardings.opt_state
        )
    arguments = int(memory.argument_size_in_bytes)
    outputs = int(memory.output_size_in_bytes)
    aliased = int(memory.alias_size_in_bytes)
    temp = int(memory.temp_size_in_bytes)
    return dict(
        model=name,
        num_params=int(sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))),
        lora_rank=cfg.lora_rank,
        trainable_params=int(
            sum(
                math.prod(x.shape)
                for x, keep in zip(
                    jax.tree.leaves(abstract_state.params),
                    jax.tree.leaves(trainable) if trainable is not None else [],
                )
                if keep
            )
            if trainable is not None
            else sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))
        ),
        mesh=",".join(str(mesh.shape[a]) for a in MESH_AXES),
        objective=objective,
        batch=rows,
        seq_len=seq_len,
        microbatches=microbatches,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        remat=cfg.remat,
        params_bytes=params,
        policy_bytes=bytes_per_device(abstract_state.params["policy"], shardings.params["policy"]),
        optimizer_bytes=opt,
        prime_bytes=prime,
        batch_bytes=bytes_per_device(batch, jax.tree.map(lambda _: rows_sharding, batch)),
        temp_bytes=temp,
        argument_bytes=arguments,
        output_bytes=outputs,
        alias_bytes=aliased,
        # Donated state is written in place, so aliased outputs take no extra room.
        peak_bytes=arguments + outputs - aliased + temp,
    )


def kv_cache_bytes(
    cfg: models.ModelConfig, rows: int, slots: int, *, row_shards: int = 1, head_shards: int = 1
) -> int:
    """Bytes of one device's part of `init_cache(cfg, rows, slots)`.

    Keys [L, rows, K, Dh, S] and values [L, rows, K, S, Dh] in the model dtype;
    rows split `row_shards` ways and KV heads `head_shards` ways (rounded up, as
    an uneven split pads).
    """
    return (
        2
        * cfg.num_layers
        * -(-rows // row_shards)
        * -(-cfg.num_kv_heads // head_shards)
        * cfg.resolved_head_dim
        * slots
        * np.dtype(cfg.jnp_dtype).itemsize
    )


def _mesh_split(mesh: Mesh, entry: Any) -> int:
    axes = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    return math.prod(mesh.shape[a] for a in axes)


def plan_sampler(
    cfg: models.ModelConfig,
    *,
    name: str = "",
    mesh: Mesh | None = None,
    prompts: int,
    samples: int,
    prompt_len: int,
    max_new_tokens: int,
    compact_min_rows: int = 8,
    cache_block: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> dict[str, Any]:
    """The sampler's bytes per device: an analytic prediction and the compiled figure.

    Plans `sampling.generate` as the RL trainer calls it: `prompts` prompts of
    `prompt_len` tokens, `samples` completions each of up to `max_new_tokens`.
    Lengths are rounded up to the sampler's buckets (prompt bucket Lp,
    completion bucket T, cache slots S = Lp + T); the decode batch starts at
    B = prompts × samples rows and halves down to `compact_min_rows`
    (`row_capacities`; not on a sharded cache, as in `generate`).

    Prediction, per device (rows and KV heads divided as the trainer shards
    the cache on a mesh of more than one device; kv(r) = `kv_cache_bytes` of
    r rows × S slots; f32 = 4 bytes; H heads, K KV heads of width Dh, D
    hidden, I MLP width, V vocabulary, L layers):

      params
      + inputs and outputs: prompts 2·P·Lp·4, budgets 4·B, tokens, log-probs
        and mask [B, T] 12·B·T
      + weight copies (whole, float32 wide): 2 of one layer's weights and 2
        of the LM head V·D (3 when the compute dtype is not the parameter's)
      + the largest of the phases
        prefill:  kv(P) + kv(P) of Lp slots + scores, masked scores and
                  probabilities 3·P·H·Lp²·f32 + hidden states
                  P·Lp·(2·D + 3·I)·f32 + logits P·V·f32
        repeat:   kv(P) (when n > 1) + kv(B) + logits B·V·f32
        compact:  kv(c) + kv(c') + logits (c + c')·V·f32, c → c' each
                  halving of `capacities`
        decode:   kv(c) + one layer's keys and values read whole
                  2·c·K·Dh·S·f32 + scores 3·c·H·S·f32 + logits k·c·V·f32
                  (k = 4, 7 with top-k / top-p), at each capacity c.

    The compiled figure lowers and compiles `_generate_jit` on abstract
    inputs with the static arguments `generate` passes and reads XLA's memory
    analysis: arguments + outputs − aliased + temporaries.

    Args:
      cfg: the policy's model config.
      name: the model's name in the result.
      mesh: the trainer's mesh (parameters sharded by the rules, the KV cache
        by `kv_cache_sharding` when it has more than one device), or None for
        one device.
      prompts, samples: P prompts per rollout, n samples per prompt.
      prompt_len: prompt tokens (the longest prompt of a rollout).
      max_new_tokens: the completion budget.
      compact_min_rows, cache_block, temperature, top_k, top_p: as in
        `sampling.generate` (cache_block 0: its default).

    Returns:
      {model, mesh, prompts, samples, rows, prompt_bucket, completion_bucket,
      slots, capacities, cache_block, dtype, params_bytes, weight_copy_bytes,
      kv_cache_bytes (B rows), io_bytes, phase_bytes (each phase's own
      bytes), predicted_bytes, argument_bytes, output_bytes, alias_bytes,
      temp_bytes, compiled_bytes}, bytes per device. The prediction counts
      the copies XLA's CPU compiler makes (it widens bfloat16 products to
      float32); GPU and TPU compilers fuse differently (not measured there).
    """
    if prompts < 1 or samples < 1:
        raise PlanError(f"prompts={prompts} and samples={samples} must be >= 1")
    if compact_min_rows < 0:
        raise PlanError(f"compact_min_rows={compact_min_rows} must be >= 0")
    if prompt_len < 1 or max_new_tokens < 1:
        raise PlanError(
            f"--prompt_len={prompt_len} and --max_new_tokens={max_new_tokens} must be >= 1"
        )
    if prompt_len + max_new_tokens > cfg.max_position_embeddings:
        raise PlanError(
            f"--prompt_len={prompt_len} + --max_new_tokens={max_new_tokens} exceeds the "
            f"model's {cfg.max_position_embeddings} positions"
        )
    lp = bucket(prompt_len, DEFAULT_BUCKETS)
    t = bucket(max_new_tokens, DEFAULT_BUCKETS)
    slots = lp + t
    block = cache_block or default_cache_block(t)
    if t % block:
        raise PlanError(f"cache_block={block} must divide the completion bucket {t}")
    rows = prompts * samples

    abstract_params = jax.eval_shape(lambda k: models.init_params(cfg, k), jax.random.key(0))
    if mesh is None:
        p_shardings = rep = cache_sharding = None
        row_shards = head_shards = 1
    else:
        p_shardings = param_shardings(models.logical_axes(cfg), mesh, shapes=abstract_params)
        rep = replicated(mesh)
        # As the RL trainer: the cache is sharded only on a mesh of several devices.
        cache_sharding = kv_cache_sharding(mesh) if mesh.devices.size > 1 else None
        spec = tuple(cache_sharding.spec) if cache_sharding is not None else ()
        row_shards = _mesh_split(mesh, spec[1]) if len(spec) > 1 else 1
        head_shards = _mesh_split(mesh, spec[2]) if len(spec) > 2 else 1
    # As `generate`: no compaction on a sharded cache.
    capacities = row_capacities(rows, compact_min_rows if cache_sharding is None else 0)

    def on_device(tree: Any, shardings: Any) -> int:
        if shardings is None:
            return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))
        return bytes_per_device(tree, shardings)

    params = on_device(abstract_params, p_shardings)
    # Weight copies, counted whole (a mesh gathers sharded weights for each
    # product) and float32 wide (the CPU compiler widens bfloat16 operands of a
    # product): the layer scan slices one layer's weights out of the stack (two
    # such slices live at once), and the logits products of the prefill and of
    # the decode loop each read a (transposed or gathered) copy of the LM head
    # [D, V] hoisted out of the loop, plus a converted one when the compute
    # dtype is not the parameter dtype.
    layer_elements = sum(x.size for x in jax.tree.leaves(abstract_params["layers"]))
    head_copies = 2 if cfg.dtype == cfg.param_dtype else 3
    weight_copies = (
        2 * layer_elements // cfg.num_layers + head_copies * cfg.vocab_size * cfg.hidden_size
    ) * 4

    def kv(r: int, s: int = slots) -> int:
        return kv_cache_bytes(cfg, r, s, row_shards=row_shards, head_shards=head_shards)

    def per_device(r: int) -> int:
        return -(-r // row_shards)

    f32 = 4
    heads, vocab, kv_width = cfg.num_heads, cfg.vocab_size, cfg.resolved_head_dim
    kv_width *= -(-cfg.num_kv_heads // head_shards)
    p_dev = per_device(prompts)
    # Logits [c, V] float32: the carried ones, the new ones, the log-probs and the
    # sampling noise; top-k / top-p add the sorted logits, their softmax and cumsum.
    logit_copies = 7 if (top_k > 0 or top_p < 1.0) else 4
    phases = dict(
        # The prompt cache, the prompt's keys and values before they are written,
        # scores, masked scores and probabilities [P, H, Lp, Lp], the MLP's
        # hidden states and the last position's logits.
        prefill=kv(prompts)
        + kv(prompts, lp)
        + 3 * p_dev * heads * lp * lp * f32
        + p_dev * lp * (2 * cfg.hidden_size + 3 * cfg.intermediate_size) * f32
        + p_dev * vocab * f32,
        # The prompt cache and its copy to P·n rows.
        repeat=(kv(prompts) if samples > 1 else 0) + kv(rows) + per_device(rows) * vocab * f32,
        # The cache at capacity c gathered into the one at c' = c / 2.
        compact=max(
            [
                kv(c) + kv(c2) + (per_device(c) + per_device(c2)) * vocab * f32
                for c, c2 in itertools.pairwise(capacities)
            ],
            default=0,
        ),
        # The cache, one layer's keys and values read up to all S slots (float32
        # wide at most), scores [c, H, S], logits.
        decode=max(
            kv(c)
            + 2 * per_device(c) * kv_width * slots * f32
            + 3 * per_device(c) * heads * slots * f32
            + logit_copies * per_device(c) * vocab * f32
            for c in capacities
        ),
    )
    # Prompt tokens and mask [P, Lp], budgets [B]; tokens, log-probs, mask [B, T].
    io = 2 * prompts * lp * 4 + rows * 4 + 12 * rows * t
    predicted = params + io + weight_copies + max(phases.values())

    i32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.int32, sharding=rep)  # noqa: E731
    args = (
        _with_shardings(abstract_params, p_shardings) if mesh is not None else abstract_params,
        i32(prompts, lp),
        i32(prompts, lp),
        jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep),
        i32(rows),
    )
    lowered = _generate_jit.lower(
        *args,
        config=cfg,
        n=samples,
        completion_bucket=t,
        sp=SamplingParams(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p)),
        cache_sharding=cache_sharding,
        cache_block=block,
        capacities=capacities,
    )
    memory = lowered.compile().memory_analysis()
    arguments = int(memory.argument_size_in_bytes)
    outputs = int(memory.output_size_in_bytes)
    aliased = int(memory.alias_size_in_bytes)
    temp = int(memory.temp_size_in_bytes)
    return dict(
        model=name,
        mesh="-" if mesh is None else ",".join(str(mesh.shape[a]) for a in MESH_AXES),
        prompts=prompts,
        samples=samples,
        rows=rows,
        prompt_bucket=lp,
        completion_bucket=t,
        slots=slots,
        capacities=list(capacities),
        cache_block=block,
        dtype=cfg.dtype,
        params_bytes=params,
        weight_copy_bytes=weight_copies,
        kv_cache_bytes=kv(rows),
        io_bytes=io,
        phase_bytes=phases,
        predicted_bytes=predicted,
        argument_bytes=arguments,
        output_bytes=outputs,
        alias_bytes=aliased,
        temp_bytes=temp,
        compiled_bytes=arguments + outputs - aliased + temp,
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:8.3f}"


def format_plan_table(rows: list[dict[str, Any]]) -> str:
    """One line per `plan_update_step` result: model, mesh, shapes, GiB per device."""
    header = (
        f"{'model':<14} {'params':>7} {'mesh':<8} {'obj':<4} {'batch×seq':>10} "
        f"{'params':>8} {'optim':>8} {'batch':>8} {'temp':>8} {'peak':>8} {'process':>8}"
    )
    lines = [
        "per-device GiB; temp = activations and temporaries of the compiled step; "
        "process = the iteration's peak plus the host runtime (CPU backend only)",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<14} {r['num_params'] / 1e9:6.2f}B {r['mesh']:<8} {r['objective']:<4} "
            f"{str(r['batch']) + '×' + str(r['seq_len']):>10} {_gib(r['params_bytes'])} "
            f"{_gib(r['optimizer_bytes'])} {_gib(r['batch_bytes'])} {_gib(r['temp_bytes'])} "
            f"{_gib(r['peak_bytes'])} "
            + (_gib(r["process_peak_bytes"]) if "process_peak_bytes" in r else f"{'-':>8}")
        )
    return "\n".join(lines)


def format_sampler_table(rows: list[dict[str, Any]]) -> str:
    """One line per `plan_sampler` result: model, mesh, shapes, GiB per device.

    A row whose compiled bytes exceed the prediction ends in "over".
    """
    header = (
        f"{'model':<14} {'mesh':<8} {'prompts×n':>9} {'prompt+new':>10} "
        f"{'params':>8} {'kv':>8} {'predict':>8} {'compiled':>8}"
    )
    lines = [
        "sampler: per-device GiB; kv = KV cache of prompts×n rows; predict = analytic peak; "
        "compiled = XLA's arguments + outputs + temp",
        header,
        "-" * len(header),
    ]
    for r in rows:
        over = "  over" if r["compiled_bytes"] > r["predicted_bytes"] else ""
        lines.append(
            f"{r['model']:<14} {r['mesh']:<8} "
            f"{str(r['prompts']) + '×' + str(r['samples']):>9} "
            f"{str(r['prompt_bucket']) + '+' + str(r['completion_bucket']):>10} "
            f"{_gib(r['params_bytes'])} {_gib(r['kv_cache_bytes'])} "
            f"{_gib(r['predicted_bytes'])} {_gib(r['compiled_bytes'])}{over}"
        )
    return "\n".join(lines)


def format_time_table(rows: list[dict[str, Any]]) -> str:
    """One line per result with a "time" estimate: seconds of the update, forwards, sampler."""
    first = next(r["time"] for r in rows if "time" in r)
    lines = [
        f"seconds per step on {first['accelerator']} (roofline at {first['mfu']:.0%} of peak "
        f"FLOP/s, {first['bandwidth_util']:.0%} of memory bandwidth; a lower bound)",
        f"{'model':<14} {'update':>8} {'forwards':>8} {'sampler':>8} {'total':>8}",
    ]
    for r in rows:
        if "time" in r:
            t = r["time"]
            lines.append(
                f"{r['model']:<14} {t['update_s']:8.2f} {t['forwards_s']:8.2f} "
                f"{t['sampler_s']:8.2f} {t['total_s']:8.2f}"
            )
    return "\n".join(lines)


def plan_memory(
    *,
    config: Any = None,
    presets: str = REAL_PRESETS,
    mesh: str = "1,8,1",
    devices: int = 0,
    batch: int = 0,
    seq_len: int = 1024,
    prompt_len: int = 0,
    objective: str | None = None,
    microbatches: int = 0,
    dtype: str = "",
    param_dtype: str = "",
    remat: str = "",
    logprob_impl: str = "auto",
    max_new_tokens: int = 0,
    group_size: int = 0,
    sampler: bool = True,
    accelerator: str = "",
    mfu: float = 0.4,
    bandwidth_util: float = 0.7,
    lora_rank: int = 0,
) -> tuple[Mesh, list[dict[str, Any]]]:
    """Plans the update step (and for GRPO the sampler) of each model; returns (mesh, results).

    Args:
      config: an experiment config (its model, batch, optimizer and loss), or
        None for `presets` with 16 rows, AdamW and one micro-batch.
      presets: comma-separated model presets (ignored with `config`).
      mesh: "data,fsdp,tensor" sizes (-1: the rest).
      devices: the device count JAX must see (0: any).
      batch, microbatches: override the config's (0: keep).
      seq_len: tokens per row; prompt_len: its prompt part (0: seq_len / 4).
      objective: "sft" or "grpo" (None: grpo for an RL config, else sft).
      dtype, param_dtype, remat: model overrides (empty: preset / config).
      logprob_impl: the token log-prob kernel choice.
      max_new_tokens, group_size: the rollout the sampler is planned for: an
        RL config's `rollout.max_new_tokens` and `group_size` (0: keep), else
        (0:) seq_len − prompt_len tokens and gcd(batch, 8) samples per prompt.
        The sampler's prompts are `prompt_len` tokens long.
      sampler: with the grpo objective, also plan the sampler (`plan_sampler`):
        an RL config's `rollout` block (prompts_per_step × group_size rows,
        compaction, cache_block, temperature, top-k / top-p), else the batch's
        rows as batch / group_size prompts.
      lora_rank: plan LoRA adapters of this rank on every projection (α = 2r)
        instead of the config's `lora` block (0: the config's, if any).
      accelerator, mfu, bandwidth_util: also estimate each step's seconds on
        the mesh's devices of that kind (`step_time.step_seconds`, a roofline
        at those utilisations) under "time"; empty: no estimate.

    Returns:
      The mesh and one `plan_update_step` result per model; for the grpo
      objective each holds its rollout's `plan_sampler` result under
      "sampler". Each also holds "reference_bytes" (a frozen copy of the
      policy the trainer keeps, `holds_reference`; else 0), "prime_bytes"
      (PRIME's ψ and its optimizer state; else 0),
      "iteration_peak_bytes" (`iteration_peak`)
      and, on a CPU backend, "runtime_bytes" (the host runtime's resident
      memory) and "process_peak_bytes" (their sum: what the training
      process's resident peak should be). Progress goes to stderr.

    Raises:
      PlanError: the device count, the batch split or the lengths do not fit.
    """
    sizes = parse_mesh(mesh)
    jax_devices = jax.devices()
    if devices and devices != len(jax_devices):
        raise PlanError(f"--devices={devices} but JAX sees {len(jax_devices)} devices")
    the_mesh = make_mesh(data=sizes[0], fsdp=sizes[1], tensor=sizes[2])
    if config is not None:
        names = [config.model.path or config.model.preset]
        objective = objective or ("grpo" if _is_rl(config) else "sft")
        if _is_rl(config):
            rows = config.rollout.prompts_per_step * config.rollout.group_size
            rows //= config.updates.minibatches
        else:
            rows = config.batch_size
            if config.objective.kind in _PAIRWISE_KINDS:
                rows *= 2
        num_micro = config.microbatches
        optimizer = make_optimizer(**config.optim)
        model_block = config.model
    else:
        names = [n.strip() for n in presets.split(",") if n.strip()]
        objective = objective or "sft"
        rows, num_micro = 16, 1
        optimizer = make_optimizer(learning_rate=1e-5)
        model_block = None
    rows = batch or rows
    num_micro = microbatches or num_micro
    if rows % (batch_parallelism(the_mesh) * num_micro):
        raise PlanError(
            f"batch of {rows} rows does not divide over data×fsdp = "
            f"{batch_parallelism(the_mesh)} devices × {num_micro} micro-batches"
        )
    prompt_len = prompt_len or seq_len // 4
    rollout = None
    if objective == "grpo" and sampler:
        rollout = _rollout_shape(config, rows, group_size, max_new_tokens, seq_len - prompt_len)
    results = []
    for name in names:
        cfg = resolve_model_config(
            name, model_block, dtype=dtype, param_dtype=param_dtype, remat=remat
        )
        block = config.lora.to_dict() if config is not None and "lora" in config else None
        if lora_rank:
            block = dict(rank=lora_rank, alpha=2.0 * lora_rank, targets=[])
        cfg = lora.with_lora(cfg, block)
        short = os.path.basename(name.rstrip("/")) or name
        sampler_row = None
        if rollout is not None:
            print(f"compiling the sampler of {name} ...", file=sys.stderr, flush=True)
            sampler_row = plan_sampler(
                cfg, name=short, mesh=the_mesh, prompt_len=prompt_len, **rollout
            )
        print(f"compiling the {objective} step of {name} ...", file=sys.stderr, flush=True)
        results.append(
            plan_update_step(
                cfg,
                name=short,
                mesh=the_mesh,
                objective=objective,
                rows=rows,
                seq_len=seq_len,
                prompt_len=prompt_len,
                microbatches=num_micro,
                optimizer=optimizer,
                logprob_impl=logprob_impl,
                config=config,
            )
        )
        if sampler_row is not None:
            results[-1]["sampler"] = sampler_row
        # With adapters (the config's or `lora_rank`'s) the base is the reference.
        results[-1]["reference_bytes"] = (
            results[-1]["policy_bytes"] if holds_reference(config) and not cfg.lora_rank else 0
        )
        results[-1]["iteration_peak_bytes"] = iteration_peak(results[-1])
        if accelerator:
            results[-1]["time"] = step_seconds(
                cfg,
                objective=objective,
                rows=rows,
                seq_len=seq_len,
                prompt_len=prompt_len,
                prompts=rollout["prompts"] if rollout else 0,
                new_tokens=rollout["max_new_tokens"] if rollout else 0,
                extra_forwards=_extra_forwards(objective, config),
                accelerator=accelerator,
                devices=the_mesh.size,
                mfu=mfu,
                bandwidth_util=bandwidth_util,
            )
    if the_mesh.devices.flat[0].platform == "cpu":
        # On a CPU backend the arrays share the process's memory with the
        # runtime: Python, JAX, XLA and the compiled programs, measured as this
        # planning process's resident set (it compiled the same programs and
        # holds no arrays of the model).
        runtime = host_resident_bytes()
        for row in results:
            row["runtime_bytes"] = runtime
            row["process_peak_bytes"] = row["iteration_peak_bytes"] + runtime
    return the_mesh, results


def iteration_peak(row: dict[str, Any]) -> int:
    """A training iteration's device peak: the update step's, or the rollout's if larger.

    During an RL rollout the state stays resident, so the sampler's compiled
    bytes (which count the parameters) add the optimizer state; a frozen
    reference copy (`reference_bytes`, `holds_reference`) and PRIME's ψ with
    its optimizer state (`prime_bytes`) are resident in both. ψ's own update
    runs apart from the policy's, on the same batch, so its activations stay
    within the policy step's.
    """
    peak = row["peak_bytes"]
    if "sampler" in row:
        peak = max(peak, row["sampler"]["compiled_bytes"] + row["optimizer_bytes"])
    return peak + row.get("reference_bytes", 0) + row.get("prime_bytes", 0)


def host_resident_bytes() -> int:
    """This process's resident memory (Linux `VmRSS`; the peak from `getrusage` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _extra_forwards(objective: str, config: Any) -> int:
    """Forward passes over the batch outside the update: GRPO's old and reference log-probs.

    As the RL trainer decides: with one epoch, one minibatch and no KL term the
    old log-probs come from the update's own forward pass (no separate pass).
    """
    if objective != "grpo":
        return 0
    if config is None or not _is_rl(config):
        return 2
    kl = config.kl.coef > 0
    # Hinted and replayed rows (curriculum) keep the separate old log-prob pass.
    behaviour = config.curriculum.hints.enabled or config.curriculum.replay.enabled
    in_update = (
        config.updates.epochs == 1 and config.updates.minibatches == 1 and not kl and not behaviour
    )
    return (0 if in_update else 1) + (1 if kl else 0)


def _rollout_shape(
    config: Any, rows: int, group_size: int, max_new_tokens: int, completion_len: int
) -> dict[str, Any]:
    """`plan_sampler`'s rollout arguments: an RL config's `rollout` block, else `rows` rows.

    `max_new_tokens` / `group_size` override (0: the config's, else
    `completion_len` and gcd(rows, 8)).
    """
    if _is_rl(config):
        r = config.rollout
        return dict(
            prompts=r.prompts_per_step,
            samples=group_size or r.group_size,
            max_new_tokens=max_new_tokens or r.max_new_tokens,
            compact_min_rows=r.compact_min_rows,
            cache_block=r.cache_block,
            temperature=r.temperature,
            top_k=r.top_k,
            top_p=r.top_p,
        )
    samples = group_size or math.gcd(rows, 8)
    if rows % samples:
        raise PlanError(f"--group_size={samples} does not divide the batch of {rows} rows")
    return dict(
        prompts=rows // samples, samples=samples, max_new_tokens=max_new_tokens or completion_len
    )


def print_memory_plan(**kwargs: Any) -> list[dict[str, Any]]:
    """`plan_memory(**kwargs)`, printed: the mesh, the table, then the results as one JSON line."""
    mesh, results = plan_memory(**kwargs)
    print(f"mesh {describe(mesh)}, platform {mesh.devices.flat[0].platform}")
    print(format_plan_table(results))
    samplers = [r["sampler"] for r in results if "sampler" in r]
    if samplers:
        print(format_sampler_table(samplers))
    if any("time" in r for r in results):
        print(format_time_table(results))
    print(json.dumps({"plan": results}))
    return results
