"""Trained reward models at use time: scorers, and reward sources of the RL loop.

  from rewardjax import scoring
  orm = scoring.OutcomeRewardModel.load("/runs/rm/hf", tokenizer="char")
  orm.scores(prompts, completions)

`models` holds the scorers (ORM, PRM, implicit PRM, ensembles); `sources`
turns them into RL reward sources. Importing this package registers every
source in `rewardjax.registry.MODEL_REWARDS`.
"""

from rewardjax.scoring.models import (
    ENSEMBLE_MODES,
    ImplicitProcessRewardModel,
    LastTokenSelfScorer,
    OutcomeRewardModel,
    ProcessRewardModel,
    RewardModelEnsemble,
    check_reference_vocab,
    load_scorer_params,
)
from rewardjax.scoring.sources import (
    CREDIT_MODES,
    ModelRewardSource,
    implicit_prm_reward,
    orm_ensemble_reward,
    orm_reward,
    prm_reward,
)

__all__ = [
    "CREDIT_MODES",
    "ENSEMBLE_MODES",
    "ImplicitProcessRewardModel",
    "LastTokenSelfScorer",
    "ModelRewardSource",
    "OutcomeRewardModel",
    "ProcessRewardModel",
    "RewardModelEnsemble",
    "check_reference_vocab",
    "implicit_prm_reward",
    "load_scorer_params",
    "orm_ensemble_reward",
    "orm_reward",
    "prm_reward",
]
