r"""Memory plan: compile the sharded update step ahead of time and print bytes per device.

Nothing is allocated: parameters, optimizer state and the batch are abstract
shapes (`jax.eval_shape`), the step is lowered and compiled for a mesh of fake
CPU devices, and XLA's memory analysis of the compiled step gives the
activations and temporaries per device.

  python -m experiments.plan                                   # the real presets, mesh 1,8,1
  python -m experiments.plan --preset qwen2.5-1.5b --mesh 1,64,1 --batch 64 --seq_len 2048
  python -m experiments.plan --preset llama-3.2-1b --mesh 2,2,2 --objective grpo --remat full
  python -m experiments.plan --config configs/grpo_arithmetic.py --mesh 1,64,1 --seq_len 1024

The figures come from XLA's CPU compiler; TPU and GPU compilers fuse
differently, so read them as an estimate (typically within tens of percent for
temporaries; parameter and optimizer bytes are exact).
"""

from __future__ import annotations

import math
import os
import sys


def _flag_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return None


def _prepare_devices(argv: list[str]) -> None:
    """Fake CPU devices must be requested before JAX starts: read --mesh/--devices early."""
    if (_flag_value(argv, "platform") or "cpu") != "cpu":
        return
    mesh = _flag_value(argv, "mesh") or "1,8,1"
    devices = int(_flag_value(argv, "devices") or 0)
    try:
        sizes = [int(s) for s in mesh.split(",")]
    except ValueError:
        return  # main() reports the bad flag
    if not devices:
        devices = math.prod(s for s in sizes if s > 0) if -1 not in sizes else 0
    os.environ["JAX_PLATFORMS"] = "cpu"
    if devices:
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}"
        ).strip()


if __name__ == "__main__":
    _prepare_devices(sys.argv)

import json  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rewardjax import models, parallel  # noqa: E402
from rewardjax.models import forward, hf  # noqa: E402
from rewardjax.objectives.sft import sft_nll_loss  # noqa: E402
from rewardjax.training.optim import make_optimizer  # noqa: E402
from rewardjax.training.rl_loss import make_rl_loss  # noqa: E402
from rewardjax.training.step import TrainState, make_update_step  # noqa: E402

REAL_PRESETS = "qwen2.5-0.5b,qwen2.5-1.5b,llama-3.2-1b"
OBJECTIVES = ("sft", "grpo")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (its model, batch, optimizer).", lock_config=True
)
_PRESET = flags.DEFINE_string(
    "preset", REAL_PRESETS, "Comma-separated model presets (ignored with --config)."
)
_MESH = flags.DEFINE_string("mesh", "1,8,1", "Mesh sizes data,fsdp,tensor (-1: the rest).")
_DEVICES = flags.DEFINE_integer("devices", 0, "Device count (needed when --mesh has a -1).")
_PLATFORM = flags.DEFINE_string(
    "platform",
    "cpu",
    "cpu: fake CPU devices (the default); gpu or tpu: this machine's real devices.",
)
_BATCH = flags.DEFINE_integer("batch", 0, "Global batch rows per update (0: config, else 16).")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 1024, "Tokens per row: prompt plus completion.")
_PROMPT_LEN = flags.DEFINE_integer("prompt_len", 0, "Prompt tokens per row (0: seq_len / 4).")
_OBJECTIVE = flags.DEFINE_enum(
    "objective",
    None,
    OBJECTIVES,
    "Update to plan: grpo (policy loss over rollouts) or sft (a log-likelihood step, the "
    "memory profile of every offline kind; give pairwise kinds 2 rows per pair). Default: "
    "grpo for an RL --config, else sft.",
)
_MICROBATCHES = flags.DEFINE_integer("microbatches", 0, "Gradient accumulation (0: config or 1).")
_DTYPE = flags.DEFINE_string("dtype", "", "Compute dtype (empty: preset / config).")
_PARAM_DTYPE = flags.DEFINE_string("param_dtype", "", "Parameter dtype (empty: preset / config).")
_REMAT = flags.DEFINE_string("remat", "", "none | full | dots (empty: preset / config).")
_LOGPROB_IMPL = flags.DEFINE_string("logprob_impl", "auto", "Token log-prob kernel choice.")


def _model_config(name: str, model_block=None) -> models.ModelConfig:
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
    if _DTYPE.value:
        changes["dtype"] = _DTYPE.value
    if _PARAM_DTYPE.value:
        changes["param_dtype"] = _PARAM_DTYPE.value
    if _REMAT.value:
        changes["remat"] = _REMAT.value
    return cfg.replace(**changes) if changes else cfg


def _sft_loss(model, impl):
    def loss(params, mb, rng, totals):
        del rng
        logp, _ = forward.completion_logprobs(
            model,
            params["policy"],
            mb["prompt_tokens"],
            mb["prompt_mask"],
            mb["tokens"],
            mb["mask"],
            impl=impl,
        )
        return sft_nll_loss(logp, mb["mask"], num_tokens=totals["num_tokens"])

    return loss


def _grpo_loss(model, impl):
    return make_rl_loss(
        model,
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
        logprob_impl=impl,
    )


def _abstract_batch(objective: str, rows: int, prompt_len: int, length: int) -> dict:
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
    return batch


def _bytes_per_device(abstract: Any, shardings: Any) -> int:
    def one(x, s):
        return math.prod(s.shard_shape(x.shape)) * np.dtype(x.dtype).itemsize

    return int(sum(jax.tree.leaves(jax.tree.map(one, abstract, shardings))))


def _with_shardings(abstract: Any, shardings: Any) -> Any:
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings
    )


def plan_one(
    cfg: models.ModelConfig,
    *,
    name: str,
    mesh,
    objective: str,
    rows: int,
    seq_len: int,
    prompt_len: int,
    microbatches: int,
    optimizer,
    logprob_impl: str,
) -> dict[str, Any]:
    """Compiles one update step on abstract inputs; returns its per-device byte counts."""
    if not 0 < prompt_len < seq_len:
        raise ValueError(f"--prompt_len={prompt_len} must lie in (0, --seq_len={seq_len})")
    parallel.check_batch(_abstract_batch(objective, rows, prompt_len, seq_len - prompt_len), mesh)
    model = models.build(cfg)
    axes = {"policy": models.logical_axes(cfg)}
    abstract_state = jax.eval_shape(
        lambda key: TrainState.create({"policy": models.init_params(cfg, key)}, optimizer),
        jax.random.key(0),
    )
    shardings = parallel.state_shardings(abstract_state, mesh, axes)
    loss = (_grpo_loss if objective == "grpo" else _sft_loss)(model, logprob_impl)
    update = make_update_step(loss, optimizer, microbatches=microbatches)
    batch_sharding = parallel.batch_sharding(mesh)
    step = parallel.jit_step(update, mesh, shardings, batch_sharding)
    batch = _abstract_batch(objective, rows, prompt_len, seq_len - prompt_len)
    rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=parallel.replicated(mesh))
    lowered = step.lower(
        _with_shardings(abstract_state, shardings),
        jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=batch_sharding), batch
        ),
        rng,
    )
    memory = lowered.compile().memory_analysis()
    params = _bytes_per_device(abstract_state.params, shardings.params)
    opt = _bytes_per_device(abstract_state.opt_state, shardings.opt_state)
    arguments = int(memory.argument_size_in_bytes)
    outputs = int(memory.output_size_in_bytes)
    aliased = int(memory.alias_size_in_bytes)
    temp = int(memory.temp_size_in_bytes)
    return dict(
        model=name,
        num_params=int(sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))),
        mesh=",".join(str(mesh.shape[a]) for a in parallel.MESH_AXES),
        objective=objective,
        batch=rows,
        seq_len=seq_len,
        microbatches=microbatches,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        remat=cfg.remat,
        params_bytes=params,
        optimizer_bytes=opt,
        batch_bytes=_bytes_per_device(batch, jax.tree.map(lambda _: batch_sharding, batch)),
        temp_bytes=temp,
        argument_bytes=arguments,
        output_bytes=outputs,
        alias_bytes=aliased,
        # Donated state is written in place, so aliased outputs take no extra room.
        peak_bytes=arguments + outputs - aliased + temp,
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:8.3f}"


def format_table(rows: list[dict[str, Any]]) -> str:
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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    sizes = parallel.parse_mesh(_MESH.value)
    devices = jax.devices()
    if _DEVICES.value and _DEVICES.value != len(devices):
        raise app.UsageError(f"--devices={_DEVICES.value} but JAX sees {len(devices)} devices")
    mesh = parallel.make_mesh(data=sizes[0], fsdp=sizes[1], tensor=sizes[2])
    config = _CONFIG.value
    if config is not None:
        names = [config.model.path or config.model.preset]
        objective = _OBJECTIVE.value or ("grpo" if config.trainer == "rl" else "sft")
        if config.trainer == "rl":
            rows = config.rollout.prompts_per_step * config.rollout.group_size
            rows //= config.updates.minibatches
        else:
            rows = config.batch_size
            if config.objective.kind in ("dpo", "rm"):
                # Pairwise kinds: chosen and rejected rows go through the model together.
                rows *= 2
        microbatches = config.microbatches
        optimizer = make_optimizer(**config.optim)
        model_block = config.model
    else:
        names = [n.strip() for n in _PRESET.value.split(",") if n.strip()]
        objective = _OBJECTIVE.value or "sft"
        rows, microbatches = 16, 1
        optimizer = make_optimizer(learning_rate=1e-5)
        model_block = None
    rows = _BATCH.value or rows
    microbatches = _MICROBATCHES.value or microbatches
    split = parallel.batch_parallelism(mesh) * microbatches
    if rows % split:
        raise app.UsageError(
            f"batch of {rows} rows does not divide over data×fsdp = "
            f"{parallel.batch_parallelism(mesh)} devices × {microbatches} micro-batches"
        )
    prompt_len = _PROMPT_LEN.value or _SEQ_LEN.value // 4
    results = []
    for name in names:
        cfg = _model_config(name, model_block)
        print(f"compiling the {objective} step of {name} ...", file=sys.stderr, flush=True)
        results.append(
            plan_one(
                cfg,
                name=os.path.basename(name.rstrip("/")) or name,
                mesh=mesh,
                objective=objective,
                rows=rows,
                seq_len=_SEQ_LEN.value,
                prompt_len=prompt_len,
                microbatches=microbatches,
                optimizer=optimizer,
                logprob_impl=_LOGPROB_IMPL.value,
            )
        )
    print(f"mesh {parallel.describe(mesh)}, platform {devices[0].platform}")
    print(format_table(results))
    print(json.dumps({"plan": results}))


if __name__ == "__main__":
    app.run(main)
