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

`experiments/plan.py` is the command line (`print_memory_plan`). The figures
come from the compiler of the mesh's devices; XLA's CPU compiler (fake CPU
devices) fuses differently from the TPU and GPU compilers, so read its
temporaries as an estimate. Parameter and optimizer bytes are exact. This
module imports the trainers' loss builders, so `rewardjax.parallel` does not
re-export it.
"""

from __future__ import annotations

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
from rewardjax.models import hf
from rewardjax.parallel.mesh import MESH_AXES, describe, make_mesh, parse_mesh
from rewardjax.parallel.rules import (
    batch_parallelism,
    batch_sharding,
    check_batch,
    jit_step,
    replicated,
    state_shardings,
)
from rewardjax.training.kinds.sft import make_sft_loss
from rewardjax.training.optim import make_optimizer
from rewardjax.training.rl_loss import make_rl_loss, rl_loss_from_config
from rewardjax.training.step import TrainState, make_update_step

__all__ = [
    "OBJECTIVES",
    "REAL_PRESETS",
    "PlanError",
    "abstract_batch",
    "bytes_per_device",
    "format_plan_table",
    "plan_memory",
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
        return rl_loss_from_config(config, policy, critic, logprob_impl=logprob_impl)
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
) -> dict[str, jax.ShapeDtypeStruct]:
    """Shapes of one update's batch: prompt [rows, prompt_len], completion [rows, length].

    GRPO adds old / rollout log-probs and advantages [rows, length];
    `ref_logprobs` (KL in the loss) and `critic` (old values, returns) add
    their [rows, length] float32 inputs.
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
    )
    check_batch(batch, mesh)
    heads = {"policy": ("lm",), **({"critic": ("value",)} if with_critic else {})}
    axes = {k: models.logical_axes(cfg, h) for k, h in heads.items()}
    abstract_state = jax.eval_shape(
        lambda key: TrainState.create(
            {k: models.init_params(cfg, key, h) for k, h in heads.items()}, optimizer
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
    update = make_update_step(loss, optimizer, microbatches=microbatches)
    rows_sharding = batch_sharding(mesh)
    step = jit_step(update, mesh, shardings, rows_sharding)
    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated(mesh))
    # β reaches the loss as a step scalar, as in the RL trainer's updates (the
    # step converts it to a replicated float32; its value does not matter here).
    scalars = {"kl_coef": 0.0} if objective == "grpo" else None
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
    arguments = int(memory.argument_size_in_bytes)
    outputs = int(memory.output_size_in_bytes)
    aliased = int(memory.alias_size_in_bytes)
    temp = int(memory.temp_size_in_bytes)
    return dict(
        model=name,
        num_params=int(sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))),
        mesh=",".join(str(mesh.shape[a]) for a in MESH_AXES),
        objective=objective,
        batch=rows,
        seq_len=seq_len,
        microbatches=microbatches,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        remat=cfg.remat,
        params_bytes=params,
        optimizer_bytes=opt,
        batch_bytes=bytes_per_device(batch, jax.tree.map(lambda _: rows_sharding, batch)),
        temp_bytes=temp,
        argument_bytes=arguments,
        output_bytes=outputs,
        alias_bytes=aliased,
        # Donated state is written in place, so aliased outputs take no extra room.
        peak_bytes=arguments + outputs - aliased + temp,
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:8.3f}"


def format_plan_table(rows: list[dict[str, Any]]) -> str:
    """One line per `plan_update_step` result: model, mesh, shapes, GiB per device."""
    header = (
        f"{'model':<14} {'params':>7} {'mesh':<8} {'obj':<4} {'batch×seq':>10} "
        f"{'params':>8} {'optim':>8} {'batch':>8} {'temp':>8} {'peak':>8}"
    )
    lines = [
        "per-device GiB; temp = activations and temporaries of the compiled step",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r['model']:<14} {r['num_params'] / 1e9:6.2f}B {r['mesh']:<8} {r['objective']:<4} "
            f"{str(r['batch']) + '×' + str(r['seq_len']):>10} {_gib(r['params_bytes'])} "
            f"{_gib(r['optimizer_bytes'])} {_gib(r['batch_bytes'])} {_gib(r['temp_bytes'])} "
            f"{_gib(r['peak_bytes'])}"
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
) -> tuple[Mesh, list[dict[str, Any]]]:
    """Plans the update step of each model on this process's devices; returns (mesh, results).

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

    Returns:
      The mesh and one `plan_update_step` result per model. Progress goes to
      stderr.

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
    results = []
    for name in names:
        cfg = resolve_model_config(
            name, model_block, dtype=dtype, param_dtype=param_dtype, remat=remat
        )
        print(f"compiling the {objective} step of {name} ...", file=sys.stderr, flush=True)
        results.append(
            plan_update_step(
                cfg,
                name=os.path.basename(name.rstrip("/")) or name,
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
    return the_mesh, results


def print_memory_plan(**kwargs: Any) -> list[dict[str, Any]]:
    """`plan_memory(**kwargs)`, printed: the mesh, the table, then the results as one JSON line."""
    mesh, results = plan_memory(**kwargs)
    print(f"mesh {describe(mesh)}, platform {mesh.devices.flat[0].platform}")
    print(format_plan_table(results))
    print(json.dumps({"plan": results}))
    return results
