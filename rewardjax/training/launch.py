"""Dispatch from a config to its trainer; the body of `experiments/train.py`."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags

from rewardjax.training import offline, quickstart, rl

TRAINERS = {"rl": rl.train, "offline": offline.train, "quickstart": quickstart.train}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Any:
    """Runs the trainer named by `config.trainer` in `workdir`.

    The trainer writes `workdir/config.json` once the config has passed its
    checks (and, on a resume, the checkpoint's compatibility check).
    """
    if config.trainer not in TRAINERS:
        raise ValueError(f"config.trainer={config.trainer!r}; known: {', '.join(sorted(TRAINERS))}")
    return TRAINERS[config.trainer](config, workdir)


def _clean(text: str) -> str:
    """An exception text without the quoting layers KeyError and AttributeError add."""
    text = " ".join(text.replace("\\n", " ").replace("\\'", "'").split())
    while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text


def config_flag_error(error: BaseException, argv: Sequence[str]) -> str:
    """One line for a command-line flag that could not be applied: the flag, the reason, a fix."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    texts = [_clean(str(e)) for e in chain]
    overrides = [a.split("=", 1)[0].removeprefix("--") for a in argv if a.startswith("--config.")]

    def flag_with(key: str) -> str | None:
        return next((f for f in overrides if key in f.split(".")), None)

    for text in texts:
        typo = re.search(r'Did you mean "(\w+)" instead of "(\w+)"', text)
        if typo:
            right, wrong = typo.groups()
            flag = flag_with(wrong)
            if flag is None:
                return f"the config has no key {wrong!r}; did you mean {right!r}?"
            fixed = ".".join(right if k == wrong else k for k in flag.split("."))
            return f"--{flag}: the config has no key {flag.removeprefix('config.')}; did you mean --{fixed}?"
    if isinstance(chain[-1], KeyError | AttributeError):
        key = texts[-1]
        flag = flag_with(key)
        if flag is not None:
            return f"--{flag}: the config has no key {key!r} on this path"
        return f"the config has no key {key!r}"
    return texts[0]


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing for `app.run`, with a bad flag reported in one line (exit 2)."""
    try:
        return flags.FLAGS(list(argv))
    except Exception as e:  # absl or ml_collections refusing a flag or an override
        print(f"error: {config_flag_error(e, argv)}", file=sys.stderr, flush=True)
        sys.exit(2)


class _OwnInfoOnly(logging.Filter):
    """Passes warnings and errors, and INFO lines of rewardjax and experiments only."""

    def __init__(self):
        super().__init__()
        self._own = tuple(
            os.path.dirname(os.path.abspath(m.__file__)) + os.sep
            for m in (sys.modules["rewardjax"],)
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        path = os.path.abspath(record.pathname)
        return path.startswith(self._own) or f"{os.sep}experiments{os.sep}" in path


def quiet_third_party_info() -> None:
    """Drops the INFO lines of other libraries (Orbax's per-save internals, ...) from the log.

    The run's own lines and every warning stay; `--third_party_info` in
    `experiments/train.py` keeps everything.
    """
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().addFilter(_OwnInfoOnly())
