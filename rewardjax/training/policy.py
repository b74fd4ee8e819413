"""Loading a policy (preset, HF checkpoint or previous run) and its tokenizer from config."""

from __future__ import annotations

import os

from rewardjax import models
from rewardjax.tokenizers import PromptFormat, Tokenizer, check_vocab, load_tokenizer
from rewardjax.training.config_checks import ConfigError


def load_tokenizer_for(model_cfg) -> Tokenizer:
    """The tokenizer named by `model.tokenizer` ("char", a directory or file).

    An empty value means the model directory's own tokenizer.
    """
    spec = model_cfg.tokenizer or model_cfg.path
    if not spec:
        raise ValueError("config model.tokenizer is empty and model.path is not set")
    return load_tokenizer(spec)


def prompt_format_of(config, tokenizer: Tokenizer) -> PromptFormat | None:
    """The config's `prompt` block as a PromptFormat (None for a config without one).

    Raises:
      ConfigError: prompt.chat_template=True but the tokenizer has no template.
    """
    if "prompt" not in config:
        return None
    fmt = PromptFormat(**config.prompt)
    if fmt.chat_template and tokenizer.chat_template is None:
        raise ConfigError(
            f"config prompt.chat_template=True but the tokenizer {tokenizer.source!r} has no "
            "chat template (chat_template.jinja, chat_template.json or "
            "tokenizer_config.json['chat_template'])"
        )
    return fmt


def load_policy(
    model_cfg, tokenizer: Tokenizer, *, heads=("lm",)
) -> tuple[models.ModelConfig, dict | None]:
    """(ModelConfig, host params or None) from `model.path` (HF directory) or `model.preset`.

    Nothing is put on a device here: a preset returns None (its parameters are
    initialised already sharded, `training.loop.init_params`), an HF directory
    returns numpy arrays of the heads it holds (heads it lacks are initialised
    there too).

    Args:
      model_cfg: the config's `model` block: path, preset, dtype, remat, overrides.
      tokenizer: checked against the model's vocabulary size.
      heads: heads the params carry.
    """
    overrides = dict(model_cfg.overrides or {})
    params = None
    if model_cfg.path:
        if not os.path.isdir(model_cfg.path):
            raise ValueError(f"config model.path={model_cfg.path!r} is not a directory")
        config, params = models.load_hf(model_cfg.path, dtype=model_cfg.dtype)
        config = config.replace(remat=model_cfg.remat, **overrides)
        if "lm" not in heads:
            params.pop("lm_head", None)
    else:
        config = models.preset(
            model_cfg.preset,
            dtype=model_cfg.dtype,
            param_dtype=model_cfg.dtype,
            remat=model_cfg.remat,
            **overrides,
        )
    check_vocab(tokenizer, config.vocab_size)
    config = config.replace(
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
        bos_token_id=tokenizer.bos_id,
    )
    return config, params
