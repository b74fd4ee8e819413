"""Test-time scaling: best-of-N with an ORM or a PRM, majority and weighted votes.

Importing this package registers every rule in `rewardjax.registry.SELECTION_RULES`.
"""

from rewardjax.inference.selection import (
    PRM_AGGREGATIONS,
    accuracy_vs_n,
    answer_classes,
    bon_orm,
    bon_prm,
    canonical_answer,
    format_accuracy_table,
    majority_vote,
    prm_aggregate,
    step_score_rows,
    weighted_majority_vote,
)

__all__ = [
    "PRM_AGGREGATIONS",
    "accuracy_vs_n",
    "answer_classes",
    "bon_orm",
    "bon_prm",
    "canonical_answer",
    "format_accuracy_table",
    "majority_vote",
    "prm_aggregate",
    "step_score_rows",
    "weighted_majority_vote",
]
