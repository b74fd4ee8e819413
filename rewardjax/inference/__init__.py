"""Test-time scaling: best-of-N with an ORM or a PRM, votes, PRM-guided step-level search.

Importing this package registers every rule in `rewardjax.registry.SELECTION_RULES`.
"""

from rewardjax.inference.compute import causal_pairs, forward_flops, matmul_params, search_flops
from rewardjax.inference.search import (
    Candidate,
    Expander,
    PolicyExpander,
    SearchResult,
    beam_search,
    best_of_n,
    early_rejection,
    first_flagged_step,
    greedy_step_search,
    refined_best_of_n,
    separator_token_ids,
    split_step_tokens,
)
from rewardjax.inference.selection import (
    PRM_AGGREGATIONS,
    accuracy_vs_n,
    answer_classes,
    bon_orm,
    bon_prm,
    canonical_answer,
    confidence_weighted_vote,
    confidence_weights,
    format_accuracy_table,
    majority_vote,
    prm_aggregate,
    step_score_rows,
    weighted_majority_vote,
)

__all__ = [
    "PRM_AGGREGATIONS",
    "Candidate",
    "Expander",
    "PolicyExpander",
    "SearchResult",
    "accuracy_vs_n",
    "answer_classes",
    "beam_search",
    "best_of_n",
    "bon_orm",
    "bon_prm",
    "canonical_answer",
    "causal_pairs",
    "confidence_weighted_vote",
    "confidence_weights",
    "early_rejection",
    "first_flagged_step",
    "format_accuracy_table",
    "forward_flops",
    "greedy_step_search",
    "majority_vote",
    "matmul_params",
    "prm_aggregate",
    "refined_best_of_n",
    "search_flops",
    "separator_token_ids",
    "split_step_tokens",
    "step_score_rows",
    "weighted_majority_vote",
]
