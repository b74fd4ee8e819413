r"""One GRPO iteration (rollout + reward + update), rewardjax vs TRL's GRPOTrainer, same model and shapes.

  python benchmarks/grpo_step.py                 # P=8 prompts × G=8, 48 new tokens
  python benchmarks/grpo_step.py --steps 3 --hidden 64 --layers 2   # quicker

Both sides load the same Qwen2-style checkpoint (written once with
`rewardjax.models.save_hf`, with a character-level `tokenizer.json`), sample G
completions per prompt at temperature 1 up to the same length, grade them
with the arithmetic task's checker, and take one policy update (PPO clip,
β = 0, one iteration per batch). Times exclude the first (compiling /
warm-up) iteration of each run.

Method (`benchmarks/method.py`): TRL first gets its best torch thread count
(1 or 2) and gradient-checkpointing setting (on, its default, or off), probed
with short runs; then the sides run in turn, rewardjax,
TRL, rewardjax, TRL, ... for `--repeats` rounds, and each side's figure is
the median of its runs' mean seconds per iteration. The load average at
start and end is in the JSON line printed last, which carries
"speedup_vs_trl" and "loaded" (true: the machine was busy, do not report).

Phases (`rewardjax_phases_s`, `trl_phases_s`: seconds per iteration, median
over repeats) come from timing each side's own methods in place. rewardjax:
rollout (sampling, device work included), decode_text, grade, prepare (old
log-probs where needed, advantages), update (the jitted step), other. TRL:
rollout (`_generate`), grade (`_calculate_rewards`), prepare (the rest of
`_generate_and_score_completions`), loss_forward (`compute_loss`),
backward_and_optimizer (the rest of the step).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def char_tokenizer_json(path: str) -> None:
    """Writes tokenizer.json + tokenizer_config.json matching rewardjax's CharTokenizer ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    from rewardjax.tokenizers import CharTokenizer

    char = CharTokenizer()
    vocab = {"<pad>": char.pad_id, "<bos>": char.bos_id, "<eos>": char.eos_id}
    for i in range(char.vocab_size):
        if i in vocab.values():
            continue
        vocab[char.decode([i], skip_special=False)] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(["<pad>", "<bos>", "<eos>"])
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "pad_token": "<pad>",
                "eos_token": "<eos>",
                "bos_token": "<bos>",
                "model_max_length": 512,
            },
            f,
        )


def build_checkpoint(path: str, hidden: int, layers: int) -> None:
    import jax

    from rewardjax import models

    config = models.ModelConfig(
        family="qwen2",
        vocab_size=99,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_layers=layers,
        num_heads=4,
        num_kv_heads=2,
        qkv_bias=True,
        max_position_embeddings=512,
        eos_token_id=2,
        pad_token_id=0,
        bos_token_id=1,
    )
    models.save_hf(
        path, config, jax.tree.map(lambda x: x, models.init_params(config, jax.random.key(0)))
    )
    char_tokenizer_json(path)


class Phases:
    """Seconds spent in chosen methods, per timed iteration (methods wrapped in place)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.on = False

    def wrap(self, obj, name: str, label: str, sync=None) -> None:
        fn = getattr(obj, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if sync is not None:
                sync(out)
            if self.on:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start
            return out

        setattr(obj, name, timed)

    def wrap_object(self, obj, name: str, label: str) -> None:
        """Times calls of the callable object `obj.name` (a dunder call is looked up on the type,
        so the object is replaced by a proxy that forwards every other attribute)."""
        phases, inner = self, getattr(obj, name)

        class Timed:
            def __getattr__(self, attr):
                return getattr(inner, attr)

            def __call__(self, *args, **kwargs):
                start = time.perf_counter()
                out = inner(*args, **kwargs)
                if phases.on:
                    phases.seconds[label] = (
                        phases.seconds.get(label, 0.0) + time.perf_counter() - start
                    )
                return out

        setattr(obj, name, Timed())

    def per_iteration(self, total: float, iterations: int) -> dict[str, float]:
        out = {k: round(v / iterations, 4) for k, v in self.seconds.items()}
        out["other"] = round(total - sum(out.values()), 4)
        return out


def rewardjax_seconds(model_dir: str, args, *, lora: dict | None = None) -> tuple[float, dict]:
    """rewardjax's seconds per GRPO iteration (after a compiling one); `lora`: a `lora` block."""
    import jax
    import method

    from configs import grpo_arithmetic
    from rewardjax.training import rl

    c = grpo_arithmetic.get_config(f"model_path={model_dir}")
    c.model.tokenizer = model_dir
    if getattr(args, "remat", ""):
        c.model.remat = args.remat
    if lora:
        c.lora.update(lora)
    c.rollout.prompts_per_step = args.prompts
    c.rollout.group_size = args.group
    c.rollout.max_new_tokens = args.new_tokens
    c.optim.learning_rate = 1e-6
    c.checkpoint.every = 0
    c.log.samples_every = 0
    c.steps = args.steps + 1
    workdir = tempfile.mkdtemp(prefix="bench_rj_")
    trainer = rl.RLTrainer(c, workdir)
    # Phases (synchronised, so each holds its device work): sampling, text and
    # grading, old log-probs and advantages, the update step.
    phases = Phases()
    phases.wrap(trainer, "_generate", "rollout", jax.block_until_ready)
    phases.wrap(rl, "decode_completions", "decode_text")
    phases.wrap_object(trainer, "rewards", "grade")
    phases.wrap(trainer, "prepare", "prepare", jax.block_until_ready)
    phases.wrap(trainer, "update", "update", jax.block_until_ready)
    trainer.train_step()  # compile
    jax.block_until_ready(trainer.state.params)
    method.reset_peak_rss()  # the timed iterations' own peak, not loading's or compiling's
    phases.on = True
    times = []
    tokens = 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        metrics = trainer.train_step()
        jax.block_until_ready(trainer.state.params)
        times.append(time.perf_counter() - t0)
        tokens += metrics["rollout/tokens"]
    seconds = sum(times) / len(times)
    return seconds, {
        "iteration_peak_gib": round(method.peak_rss_gib(), 3),
        "remat": c.model.remat,
        "completion_tokens_per_step": tokens / args.steps,
        "phases": phases.per_iteration(seconds, args.steps),
    }


def trl_seconds(
    model_dir: str,
    args,
    *,
    threads: int | None = None,
    checkpointing: bool = True,
    peft_config=None,
    learning_rate: float = 1e-6,
) -> tuple[float, dict]:
    """TRL's seconds per GRPO iteration (the first, warm-up step left out); `peft_config`: LoRA."""
    import method
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    import rewardjax.data  # noqa: F401  (registers the procedural tasks)
    from rewardjax.registry import TASKS

    torch.manual_seed(0)
    task = TASKS.get("arithmetic_chain")(num_steps=3, max_operand=9)
    problems = task.problems(0, args.prompts * (args.steps + 2), split="train")
    by_prompt = {p.prompt: p for p in problems}
    data = Dataset.from_dict({"prompt": [p.prompt for p in problems]})
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
    tokenizer.padding_side = "left"

    def reward(prompts, completions, **kwargs):
        return [float(task.grade(by_prompt[p], c).correct) for p, c in zip(prompts, completions)]

    class Timer(TrainerCallback):
        def __init__(self):
            self.times = []

        def on_step_begin(self, a, state, control, **kw):
            self._t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self._t0)

    timer = Timer()
    phases = Phases()
    config = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_trl_"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        max_completion_length=args.new_tokens,
        max_steps=args.steps + 1,
        learning_rate=learning_rate,
        beta=0.0,
        temperature=1.0,
        logging_steps=1000,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=0,
        gradient_checkpointing=checkpointing,  # TRL's default is True
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=data,
        processing_class=tokenizer,
        callbacks=[timer],
        peft_config=peft_config,
    )
    # Phases: generation (HF generate), grading, the rest of preparing the batch
    # (tokenising, log-probs where needed, advantages), the loss forward; what
    # remains of a step is the backward pass and the optimizer.
    phases.wrap(trainer, "_generate", "rollout")
    phases.wrap(trainer, "_calculate_rewards", "grade")
    phases.wrap(trainer, "_generate_and_score_completions", "prepare_all")
    phases.wrap(trainer, "compute_loss", "loss_forward")

    class StartPhases(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if not phases.on:  # after the warm-up step: the timed steps' own peak memory
                method.reset_peak_rss()
            phases.on = True

    trainer.add_callback(StartPhases())
    trainer.train()
    steady = timer.times[1:]
    seconds = sum(steady) / len(steady)
    per = phases.per_iteration(seconds, len(steady))
    # prepare_all holds rollout and grade: keep only its remainder, and count it once.
    per["backward_and_optimizer"] = round(per.pop("other") + per["rollout"] + per["grade"], 4)
    per["prepare"] = round(per.pop("prepare_all") - per["rollout"] - per["grade"], 4)
    return seconds, {
        "torch_threads": torch.get_num_threads(),
        "phases": per,
        "iteration_peak_gib": round(method.peak_rss_gib(), 3),
    }


def main():
    import method

    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=48)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--remat", default="", help="rewardjax model.remat (default: the config's)")
    args = parser.parse_args()
    start = method.machine_load()
    model_dir = os.path.join(tempfile.mkdtemp(prefix="bench_grpo_"), "model")
    build_checkpoint(model_dir, args.hidden, args.layers)
    probe_args = argparse.Namespace(**{**vars(args), "steps": 2})
    # TRL's best of torch threads × gradient checkpointing (on by default in GRPOConfig).
    threads, checkpointing = method.best_setting(
        lambda s: trl_seconds(model_dir, probe_args, threads=s[0], checkpointing=s[1])[0],
        [(n, gc) for n in (1, 2) for gc in (True, False)],
    )
    print(f"trl: best torch threads {threads}, gradient checkpointing {checkpointing}", flush=True)
    info: dict = {}
    phases: dict[str, list[dict]] = {"rewardjax": [], "trl": []}

    def ours() -> float:
        seconds, extra = rewardjax_seconds(model_dir, args)
        phases["rewardjax"].append(extra.pop("phases"))
        info.update(extra)
        print(f"rewardjax: {seconds:.3f} s/iteration {phases['rewardjax'][-1]}", flush=True)
        return seconds

    def theirs() -> float:
        seconds, extra = trl_seconds(model_dir, args, threads=threads, checkpointing=checkpointing)
        phases["trl"].append(extra.pop("phases"))
        info.update(extra)
        print(f"trl:       {seconds:.3f} s/iteration {phases['trl'][-1]}", flush=True)
        return seconds

    def median_phases(runs: list[dict]) -> dict[str, float]:
        return {k: round(method.summarize([r[k] for r in runs])["median"], 4) for k in runs[0]}

    samples = method.interleave({"rewardjax": ours, "trl": theirs}, repeats=args.repeats)
    line = method.report(
        "grpo_step",
        samples,
        start=start,
        ratio=("trl", "rewardjax"),
        ratio_key="speedup_vs_trl",
        rewardjax_s_per_iter=round(method.summarize(samples["rewardjax"])["median"], 4),
        trl_s_per_iter=round(method.summarize(samples["trl"])["median"], 4),
        prompts=args.prompts,
        group_size=args.group,
        max_new_tokens=args.new_tokens,
        hidden=args.hidden,
        layers=args.layers,
        trl_gradient_checkpointing=checkpointing,
        rewardjax_phases_s=median_phases(phases["rewardjax"]),
        trl_phases_s=median_phases(phases["trl"]),
        **info,
    )
    print(json.dumps(line))


if __name__ == "__main__":
    main()
