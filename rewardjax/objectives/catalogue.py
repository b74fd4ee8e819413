"""Renders every registered objective (name, formula, source) as a Markdown page.

  python -m rewardjax.objectives.catalogue > docs/objectives.md

The formula and source come from each function's docstring: the summary is its
first line, the formula the first indented block before `Args:`, the source
the paragraph that starts with `Source:`.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import NamedTuple

import rewardjax.data.curation
import rewardjax.objectives  # noqa: F401  (registers every mechanism)
from rewardjax import registry

# (registry attribute, section title, module) in page order.
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("POLICY_LOSSES", "Policy losses", "rewardjax.objectives.policy"),
    ("LOSS_AGGREGATIONS", "Loss aggregation modes", "rewardjax.objectives.aggregation"),
    ("ADVANTAGES", "Advantage estimators", "rewardjax.objectives.advantages"),
    ("KL_ESTIMATORS", "KL estimators and KL placement", "rewardjax.objectives.kl"),
    ("PREFERENCE_LOSSES", "Preference losses", "rewardjax.objectives.preference"),
    ("SFT_LOSSES", "Supervised fine-tuning losses", "rewardjax.objectives.sft"),
    ("REWARD_MODEL_LOSSES", "Reward-model losses", "rewardjax.objectives.reward_modeling"),
    ("CREDIT_RULES", "Process-credit rules", "rewardjax.objectives.credit"),
    ("CURATION", "Curation rules (groups kept, rows weighted)", "rewardjax.data.curation"),
)

_INTRO = """\
# Objectives

Every loss, advantage estimator, KL estimator and credit rule of
`rewardjax.objectives`, by registry key. Choose one by config:

```python
loss_fn = registry.bind(POLICY_LOSSES.get(c.loss.name), c.loss.kwargs)  # keys checked
```

Conventions: arrays are float32 inside (bf16 inputs are cast); `mask` [B, T] is
1.0 on completion tokens; A > 0 makes a token more likely; ρ = exp(clip(logp −
old_logp, −20, 20)); δ = ref_logp − logp; sg = stop-gradient; σ = sigmoid.
Losses return `(loss, metrics)` with scalar metrics.

**Micro-batching.** Every aggregation mode, and every loss that takes
`num_tokens` / `num_seqs` / `total_weight`, accepts the counts of the *whole*
batch (`rewardjax.objectives.global_counts(mask)`); the micro-batch losses are
then summed to give exactly the full-batch loss and gradient.

This page is generated from the docstrings:
`python -m rewardjax.objectives.catalogue > docs/objectives.md`.
"""


class Entry(NamedTuple):
    key: str
    function: str
    summary: str
    formula: str
    source: str


def parse_docstring(fn) -> tuple[str, str, str]:
    """(summary, formula, source) of a registered function's docstring."""
    doc = inspect.getdoc(fn) or ""
    lines = doc.splitlines()
    summary = lines[0].strip() if lines else ""
    formula_lines: list[str] = []
    for line in lines[1:]:
        if re.match(r"^(Args|Returns)\b", line):
            break
        if line.startswith("  ") and line.strip():
            formula_lines.append(line.strip())
        elif formula_lines:
            break
    source = ""
    match = re.search(r"^Source:(.*?)(?:\n\s*\n|\Z)", doc, flags=re.S | re.M)
    if match:
        source = " ".join(part.strip() for part in match.group(1).splitlines()).strip()
    return summary, "<br>".join(formula_lines), source


def entries(registry_name: str) -> list[Entry]:
    reg = getattr(registry, registry_name)
    out = []
    for key in reg.names():
        fn = reg.get(key)
        summary, formula, source = parse_docstring(fn)
        out.append(Entry(key, f"{fn.__module__}.{fn.__qualname__}", summary, formula, source))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    parts = [_INTRO]
    for registry_name, title, module in SECTIONS:
        parts.append(f"\n## {title} (`{registry_name}`, `{module}`)\n")
        parts.append("| Key | What | Formula | Source |")
        parts.append("|---|---|---|---|")
        for e in entries(registry_name):
            parts.append(
                f"| `{e.key}` | {_cell(e.summary)} | {_cell(e.formula)} | {_cell(e.source)} |"
            )
    return "\n".join(parts) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
