"""The objective kinds of the offline trainer, by `config.objective.kind`.

What differs between them is only how a batch is built, which loss reads it
and how the result is evaluated. Each class takes `(config, *, tokenizer,
model_config, model, params, task)` and offers `kind`, `heads`, `data`
(get_state/set_state), `loss`, `next_batch()` and `evaluate(params, rng)`.
"""

from rewardjax.training.kinds.dpo import PreferenceObjective
from rewardjax.training.kinds.implicit_prm import ImplicitPRMObjective
from rewardjax.training.kinds.prm import ProcessRewardObjective
from rewardjax.training.kinds.rm import RewardModelObjective
from rewardjax.training.kinds.sft import SFTObjective

# objective.kind → its class.
KINDS = {
    cls.kind: cls
    for cls in (
        SFTObjective,
        PreferenceObjective,
        RewardModelObjective,
        ProcessRewardObjective,
        ImplicitPRMObjective,
    )
}

__all__ = [
    "KINDS",
    "ImplicitPRMObjective",
    "PreferenceObjective",
    "ProcessRewardObjective",
    "RewardModelObjective",
    "SFTObjective",
]
