r"""Memory plan: compile the sharded update step ahead of time and print bytes per device.

Nothing is allocated: parameters, optimizer state and the batch are abstract
shapes (`jax.eval_shape`), the step is lowered and compiled for a mesh of fake
CPU devices, and XLA's memory analysis of the compiled step gives the
activations and temporaries per device. With the grpo objective the RL loop's
sampler is planned too (a second table): its KV cache and peak predicted
analytically, next to the compiled sampler's bytes (an RL --config's rollout
block, or --batch rows as --group_size samples of --max_new_tokens tokens per
prompt of --prompt_len tokens).

  python -m experiments.plan                                   # the real presets, mesh 1,8,1
  python -m experiments.plan --preset qwen2.5-1.5b --mesh 1,64,1 --batch 64 --seq_len 2048
  python -m experiments.plan --preset llama-3.2-1b --mesh 2,2,2 --objective grpo --remat full
  python -m experiments.plan --config configs/grpo_arithmetic.py --mesh 1,64,1 --seq_len 1024
  python -m experiments.plan --preset qwen2.5-0.5b --objective grpo --batch 128 --group_size 8 \
      --prompt_len 256 --max_new_tokens 1024

The figures come from XLA's CPU compiler; TPU and GPU compilers fuse
differently, so read them as an estimate (typically within tens of percent for
temporaries; parameter and optimizer bytes are exact). The work is
`rewardjax.training.memory_plan.print_memory_plan`.
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

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from rewardjax.training.memory_plan import (  # noqa: E402
    OBJECTIVES,
    REAL_PRESETS,
    PlanError,
    print_memory_plan,
)
from rewardjax.training.step_time import ACCELERATORS  # noqa: E402

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
_SAMPLER = flags.DEFINE_bool(
    "sampler", True, "With --objective grpo, also plan the sampler (--nosampler: skip it)."
)
_MAX_NEW_TOKENS = flags.DEFINE_integer(
    "max_new_tokens",
    0,
    "Sampler completion budget (0: an RL config's rollout.max_new_tokens, else seq_len - "
    "prompt_len).",
)
_ACCELERATOR = flags.DEFINE_enum(
    "accelerator",
    "",
    ["", *ACCELERATORS],
    "Also estimate seconds per step on the mesh's devices of this kind (a roofline).",
)
_LORA_RANK = flags.DEFINE_integer(
    "lora_rank", 0, "Plan LoRA adapters of this rank on every projection (0: the config's)."
)
_MFU = flags.DEFINE_float("mfu", 0.4, "Fraction of peak FLOP/s of the time estimate.")
_BANDWIDTH = flags.DEFINE_float(
    "bandwidth_util", 0.7, "Fraction of memory bandwidth of the sampler's decode estimate."
)
_GROUP_SIZE = flags.DEFINE_integer(
    "group_size",
    0,
    "Sampler samples per prompt (0: an RL config's rollout.group_size, else gcd(batch, 8)); "
    "without an RL config the prompts are batch / group_size.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        print_memory_plan(
            config=_CONFIG.value,
            presets=_PRESET.value,
            mesh=_MESH.value,
            devices=_DEVICES.value,
            batch=_BATCH.value,
            seq_len=_SEQ_LEN.value,
            prompt_len=_PROMPT_LEN.value,
            objective=_OBJECTIVE.value,
            microbatches=_MICROBATCHES.value,
            dtype=_DTYPE.value,
            param_dtype=_PARAM_DTYPE.value,
            remat=_REMAT.value,
            logprob_impl=_LOGPROB_IMPL.value,
            max_new_tokens=_MAX_NEW_TOKENS.value,
            group_size=_GROUP_SIZE.value,
            accelerator=_ACCELERATOR.value,
            lora_rank=_LORA_RANK.value,
            mfu=_MFU.value,
            bandwidth_util=_BANDWIDTH.value,
            sampler=_SAMPLER.value,
        )
    except PlanError as e:
        raise app.UsageError(str(e)) from None


if __name__ == "__main__":
    app.run(main)
