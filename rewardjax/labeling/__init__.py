"""Automatic step labels: Monte Carlo prefix values, first-error search, consensus filtering.

from rewardjax import labeling
values = labeling.monte_carlo_values(completer, problems, steps, k=8, grade=g, rng=key)
records = labeling.step_labels(problems, steps, values.labels("soft"), values.first_errors())
"""

from rewardjax.labeling.consensus import (
    consensus_mask,
    first_error_accuracy,
    normalise_first_error,
    prm_first_errors,
    step_label_f1,
)
from rewardjax.labeling.montecarlo import (
    Completer,
    FirstErrorSearch,
    PrefixValues,
    first_error_of_values,
    first_error_search,
    grade_solutions,
    hard_labels,
    monte_carlo_values,
    prefix_text,
    step_labels,
    tune_threshold,
)

__all__ = [
    "Completer",
    "FirstErrorSearch",
    "PrefixValues",
    "consensus_mask",
    "first_error_accuracy",
    "first_error_of_values",
    "first_error_search",
    "grade_solutions",
    "hard_labels",
    "monte_carlo_values",
    "normalise_first_error",
    "prefix_text",
    "prm_first_errors",
    "step_label_f1",
    "step_labels",
    "tune_threshold",
]
