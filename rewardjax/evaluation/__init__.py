"""Evaluation metrics: pass@k family, reward-model and PRM metrics, aggregates, lengths.

Importing this package registers every metric in `rewardjax.registry.METRICS`.
"""

from rewardjax.evaluation.aggregates import (
    performance_profile,
    probability_of_improvement,
    rliable_aggregates,
    stratified_bootstrap_ci,
)
from rewardjax.evaluation.benchmarks import (
    processbench_scores,
    rewardbench2_scores,
    rewardbench_scores,
)
from rewardjax.evaluation.lengths import length_accuracy_pareto, length_stats
from rewardjax.evaluation.passk import (
    avg_at_n,
    maj_at_k,
    pass_at_k,
    pass_at_k_curve,
    pass_at_k_per_problem,
)
from rewardjax.evaluation.rm_metrics import (
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    auroc,
    best_of_4_accuracy,
    calibration,
    first_error_steps,
    processbench_best_threshold,
    processbench_f1,
    rewardbench2_ties_score,
    rewardbench_section_scores,
    rm_pairwise_accuracy,
    score_correctness_correlation,
    step_auroc,
)

__all__ = [
    "REWARDBENCH_EXAMPLE_COUNTS",
    "REWARDBENCH_SECTIONS",
    "auroc",
    "avg_at_n",
    "best_of_4_accuracy",
    "calibration",
    "first_error_steps",
    "length_accuracy_pareto",
    "length_stats",
    "maj_at_k",
    "pass_at_k",
    "pass_at_k_curve",
    "pass_at_k_per_problem",
    "performance_profile",
    "probability_of_improvement",
    "processbench_best_threshold",
    "processbench_f1",
    "processbench_scores",
    "rewardbench2_scores",
    "rewardbench2_ties_score",
    "rewardbench_scores",
    "rewardbench_section_scores",
    "rliable_aggregates",
    "rm_pairwise_accuracy",
    "score_correctness_correlation",
    "step_auroc",
    "stratified_bootstrap_ci",
]
