"""The trainer shell under the RL and offline loops.

What every trainer does the same way lives here, once: the tokenizer, the
mesh and the optimizer from config; parameters and optimizer state created
already sharded (`init_params`, `Trainer.create_state`: `jax.eval_shape` →
shardings → a jitted init with `out_shardings`, so no device ever holds more
than its shard); the jitted update step; restore (with the log trimmed to the
restored step) and save; the run loop with its non-finite guard, periodic
evaluation, logging and fault hooks; and the HF export.

  class MyTrainer(Trainer):
      desc = "my"
      def train_step(self) -> dict: ...            # one iteration; returns its metrics
      def evaluate(self) -> dict: ...              # held-out metrics
      def progress_fields(self, metrics) -> dict: ...

Config keys the shell reads (the same in every trainer): seed, steps, model,
mesh, optim, microbatches, max_consecutive_skips, export_hf, eval.every,
log.every, checkpoint.{every, keep, best_metric, async_save}.

Multi-host: every process runs this same code. Arrays that span processes are
read on the host only through `parallel.gather_to_host` (a collective that
every process calls); metrics, samples and exports are written by process 0; saves
are collective.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from rewardjax import models, parallel
from rewardjax.models import lora
from rewardjax.training import faults
from rewardjax.training.checkpoint import Checkpointer, check_compatible
from rewardjax.training.config_checks import check_ranges
from rewardjax.training.optim import make_optimizer
from rewardjax.training.policy import load_policy, load_tokenizer_for, prompt_format_of
from rewardjax.training.step import TrainState, make_update_step
from rewardjax.training.writers import MetricWriter, Progress, write_config

Array = jax.Array


def put_global(host: Any, shardings: Any) -> Any:
    """Host arrays (the same on every process) placed with `shardings`, shard by shard.

    Each device receives only its slice; works for meshes that span processes.
    """

    def put(x, sharding):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, host, shardings)


def init_params(
    model_config: models.ModelConfig,
    heads: Sequence[str],
    mesh: jax.sharding.Mesh,
    key: Array,
    host: dict | None = None,
) -> tuple[dict, dict]:
    """(params, logical axes) of a model, created sharded on `mesh`.

    Args:
      model_config: the model.
      heads: its heads.
      mesh: where the params live.
      key: initialises the parameters `host` does not give.
      host: numpy params read from a checkpoint (e.g. `load_policy`), or None
        for a fresh model. Subtrees it lacks (a new head) are initialised.

    Fresh parameters come out of one jitted init compiled with the final
    shardings as `out_shardings`; loaded ones are placed shard by shard.
    """
    logical = models.logical_axes(model_config, heads)

    def fresh(k):
        return models.init_params(model_config, k, heads)

    abstract = traverse_util.flatten_dict(jax.eval_shape(fresh, key))
    shardings = traverse_util.flatten_dict(
        parallel.param_shardings(logical, mesh, shapes=traverse_util.unflatten_dict(abstract))
    )
    given = traverse_util.flatten_dict(host) if host is not None else {}
    missing = [path for path in abstract if path not in given]
    params: dict = {}
    if missing:
        # Only the missing leaves (a new head, LoRA adapters) are outputs: XLA
        # drops the rest of the init.
        def init_missing(k):
            full = traverse_util.flatten_dict(fresh(k))
            return traverse_util.unflatten_dict({path: full[path] for path in missing})

        sub = traverse_util.unflatten_dict({path: shardings[path] for path in missing})
        params.update(
            traverse_util.flatten_dict(parallel.init_sharded(init_missing, mesh, sub, key))
        )
    present = [path for path in abstract if path in given]
    if present:
        placed = put_global(
            traverse_util.unflatten_dict({path: given[path] for path in present}),
            traverse_util.unflatten_dict({path: shardings[path] for path in present}),
        )
        params.update(traverse_util.flatten_dict(placed))
    return traverse_util.unflatten_dict({path: params[path] for path in abstract}), logical


def lora_block(config) -> dict | None:
    """The config's `lora` block as a dict when it asks for adapters (a rank or a PEFT directory)."""
    if "lora" not in config or not (config.lora.rank or config.lora.get("adapter_path")):
        return None
    return config.lora.to_dict()


class Trainer:
    """The shell: state, step, checkpoints, run loop and export; subclasses add the iteration.

    Subclasses call `Trainer.__init__` first (it checks the config's ranges
    before anything else), then load their models (`load_model`), call
    `create_state`, `compile_step` and finally `restore`.
    They implement `train_step()`, `evaluate()`, `progress_fields(metrics)`,
    and may extend `signature()` / `meta()` / `load_meta(meta)` with what a
    resume must check or bring back.

    A trainer that trains a second model beside its main one (PRIME's implicit
    PRM) puts that model's TrainState in `self.aux_states[name]` before
    `restore()`: it is saved and restored with the main state, under the same
    checksums, and its name joins the signature a resume checks.
    """

    desc = "train"

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        check_ranges(config)  # before anything is loaded, compiled or written
        self.config = c = config
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.rng = jax.random.key(c.seed)
        self.tokenizer = load_tokenizer_for(c.model)
        self.tokenizer.prompt_format = prompt_format_of(c, self.tokenizer)
        # Params, optimizer state and batches live on one mesh (data, fsdp,
        # tensor); the update step is jitted with explicit in/out shardings.
        self.mesh = parallel.mesh_from_config(c.mesh)
        self.optimizer = make_optimizer(**c.optim)
        self.step = 0
        # name → TrainState saved beside self.state (see the class docstring).
        self.aux_states: dict[str, TrainState] = {}
        self.trainable = None  # the LoRA mask, set by create_state
        self.writer = MetricWriter(workdir)
        self.checkpointer = Checkpointer(
            workdir,
            keep=c.checkpoint.keep,
            best_metric=c.checkpoint.best_metric or None,
            async_save=c.checkpoint.async_save,
        )

    # ------------------------------------------------------------------ state

    def next_key(self) -> Array:
        self.rng, key = jax.random.split(self.rng)
        return key

    def load_model(self, heads: Sequence[str] = ("lm",)) -> tuple[models.ModelConfig, dict, dict]:
        """(config, sharded params, logical axes) of `config.model` with `heads`."""
        model_config, host = load_policy(self.config.model, self.tokenizer, heads=heads)
        block = lora_block(self.config)
        if block and block.get("adapter_path"):
            # Start from a PEFT adapter directory: its rank, alpha and targets.
            model_config, adapters = lora.load_peft(block["adapter_path"], model_config)
            if host is None:
                raise ValueError("config lora.adapter_path needs the base checkpoint in model.path")
            host = lora.with_adapters(host, adapters)
        else:
            model_config = lora.with_lora(model_config, block)
        params, logical = init_params(model_config, heads, self.mesh, self.next_key(), host)
        return model_config, params, logical

    def create_state(self, params: dict, logical: dict) -> None:
        """TrainState (params + optimizer state) created with its final shardings."""

        # LoRA: only the adapters (and new scalar heads) are trained; the
        # optimizer holds their statistics alone.
        self.trainable = lora.trainable_mask(params) if lora_block(self.config) else None

        def create(p):
            return TrainState.create(p, self.optimizer, self.trainable)

        abstract = jax.eval_shape(create, params)
        self.state_sharding = parallel.state_shardings(abstract, self.mesh, logical)
        self.state = jax.jit(create, out_shardings=self.state_sharding)(params)

    def compile_step(self, loss_fn: Callable, *, rows: int) -> None:
        """The jitted update step for batches of `rows` rows in `config.microbatches` parts."""
        c = self.config
        parallel_rows = parallel.batch_parallelism(self.mesh)
        if c.microbatches < 1 or rows % c.microbatches:
            raise ValueError(
                f"a batch of {rows} rows does not split into microbatches={c.microbatches}"
            )
        if (rows // c.microbatches) % parallel_rows:
            raise ValueError(
                f"micro-batches of {rows // c.microbatches} rows do not divide over the "
                f"{parallel_rows} data-parallel shards of mesh {dict(self.mesh.shape)}"
            )
        self.update_fn = parallel.jit_step(
            make_update_step(
                loss_fn, self.optimizer, microbatches=c.microbatches, trainable=self.trainable
            ),
            self.mesh,
            self.state_sharding,
            parallel.batch_sharding(self.mesh),
        )

    def update(self, batch: Mapping[str, Any], scalars: Mapping[str, float] | None = None):
        """One update on a host batch (the same global batch on every process)."""
        self.state, metrics = self.update_fn(
            self.state, parallel.shard_batch(dict(batch), self.mesh), self.next_key(), scalars
        )
        return metrics

    # ------------------------------------------------------------------ checkpoints

    def signature(self) -> dict:
        """What a resume checks against the checkpoint (model shape; subclasses add)."""
        mc = self.model_config
        out = dict(
            vocab_size=mc.vocab_size,
            hidden_size=mc.hidden_size,
            num_layers=mc.num_layers,
            num_heads=mc.num_heads,
            num_kv_heads=mc.num_kv_heads,
            intermediate_size=mc.intermediate_size,
        )
        if mc.lora_rank:  # only with adapters: checkpoints written before LoRA stay resumable
            out["lora"] = dict(rank=mc.lora_rank, targets=list(mc.lora_targets))
        # Only when there are any: checkpoints written without them stay resumable.
        if self.aux_states:
            out["aux_states"] = sorted(self.aux_states)
        return out

    def checkpoint_states(self) -> dict[str, TrainState]:
        """The arrays a checkpoint holds: {"train": the main state, **aux_states}."""
        if "train" in self.aux_states:
            raise ValueError("aux_states: the name 'train' is the main state's")
        return {"train": self.state, **self.aux_states}

    def meta(self) -> dict:
        """JSON saved beside the arrays; subclasses add their data position."""
        return {}

    def load_meta(self, meta: dict) -> None:
        """Brings back what `meta()` saved."""

    def restore(self) -> None:
        """Resumes from the newest readable checkpoint, and trims the logs to its step."""
        restored = self.checkpointer.restore_latest(
            self.checkpoint_states(),
            check=lambda meta: check_compatible(meta["model"], self.signature()),
        )
        if restored is None:
            if self.writer.logged_steps():
                # A run killed before its first checkpoint starts over; its
                # rows are kept aside, not deleted.
                suffix = self.writer.set_aside()
                logging.warning(
                    "%s has logs but no checkpoint: starting at step 0, the old logs are "
                    "kept as metrics.jsonl.%s and samples.jsonl.%s",
                    self.workdir,
                    suffix,
                    suffix,
                )
            write_config(self.config, self.workdir)
            return
        step, arrays, meta = restored
        self.state = arrays["train"]
        self.aux_states = {name: arrays[name] for name in self.aux_states}
        # The key lives in the JSON: a host-local array cannot be saved by a multi-host run.
        self.rng = jax.random.wrap_key_data(np.asarray(meta["rng"], np.uint32))
        self.load_meta(meta)
        self.step = step
        self.writer.truncate_after(step)
        # Only now: a launch that fails its checks leaves the workdir's record as it was.
        write_config(self.config, self.workdir)
        logging.info("resumed %s at step %d", self.workdir, step)

    def save(self, metrics: dict | None = None) -> None:
        meta = dict(
            self.meta(),
            model=self.signature(),
            rng=np.asarray(jax.random.key_data(self.rng)).tolist(),
            config=self.config.to_dict(),
        )
        faults.maybe_kill("before_save", self.step)
        self.checkpointer.save(self.step, self.checkpoint_states(), meta, metrics=metrics)
        faults.maybe_kill("during_save", self.step)

    # ------------------------------------------------------------------ the loop

    def train_step(self) -> dict[str, Any]:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        raise NotImplementedError

    def progress_fields(self, metrics: Mapping[str, Any]) -> dict[str, float | None]:
        """Values the progress bar shows besides steps/s (the first, `tokens`, is a rate)."""
        return {}

    def run(self) -> dict[str, float]:
        """Trains to `config.steps` from wherever the workdir left off; returns the last logged metrics."""
        c = self.config
        progress = Progress(c.steps, initial=self.step, desc=self.desc)
        last: dict[str, float] = {}
        start = time.time()
        while self.step < c.steps:
            metrics = self.train_step()
            faults.maybe_kill("after_step", self.step)
            if c.eval.every and self.step % c.eval.every == 0:
                metrics.update({f"eval/{k}": v for k, v in self.evaluate().items()})
            if self.step % c.log.every == 0 or self.step == c.steps:
                metrics["time/elapsed_s"] = time.time() - start
                last = self.writer.write_scalars(self.step, metrics)
            progress.update(**self.progress_fields(metrics))
            if int(self.state.consecutive_skips) >= c.max_consecutive_skips:
                self.save()
                self.checkpointer.wait()
                raise FloatingPointError(
                    f"{c.max_consecutive_skips} consecutive updates had a non-finite loss or "
                    f"gradient (step {self.step}); the last good state is checkpointed in "
                    f"{self.workdir}"
                )
            if c.checkpoint.every and self.step % c.checkpoint.every == 0:
                self.save(metrics=last or None)
        progress.close()
        self.save()
        self.checkpointer.close()
        if c.export_hf:
            self.export(os.path.join(self.workdir, "hf"))
        self.writer.flush()
        return last

    def export(self, path: str) -> str:
        """Writes the policy as an HF checkpoint directory (process 0); extra heads ride along.

        With LoRA the adapters alone also go to the sibling `peft/`.
        """
        return self.export_params(path, self.state.params["policy"], peft=True)

    def export_params(self, path: str, params, *, peft: bool = False) -> str:
        """Writes `params` (the policy's structure) as an HF checkpoint directory (process 0)."""
        # A collective: every process takes part in gathering the shards.
        params = parallel.gather_to_host(params)
        if parallel.is_main_process():
            # The checkpoint carries the tokenizer it was trained with, when that
            # is a directory (an HF model's own), so it loads as one piece.
            spec = self.config.model.tokenizer or self.config.model.path
            tokenizer_dir = spec if spec and os.path.isdir(spec) else None
            if peft and self.model_config.lora_rank:
                # The adapters alone, as PEFT loads them onto the base checkpoint.
                lora.save_peft(
                    os.path.join(os.path.dirname(path), "peft"),
                    self.model_config,
                    params,
                    base_model=self.config.model.path,
                )
            # LoRA: the adapters folded into the kernels (a plain HF checkpoint).
            config, params = lora.merge(self.model_config, params)
            models.save_hf(path, config, params, tokenizer_dir=tokenizer_dir)
        parallel.barrier(f"export {os.path.basename(path)}")
        return path


def finite_or_none(x) -> float | None:
    """A float for the progress bar, or None for a missing or non-finite value."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None
