"""docs/objectives.md lists every registered objective with its formula and source."""

from __future__ import annotations

import pathlib

import pytest

from rewardjax.objectives import catalogue

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "objectives.md"
ALL = [(r, e) for r, _, _ in catalogue.SECTIONS for e in catalogue.entries(r)]


@pytest.mark.parametrize(("registry_name", "entry"), ALL, ids=[e.key for _, e in ALL])
def test_every_entry_has_summary_formula_and_source(registry_name, entry):
    assert entry.summary, f"{entry.key}: docstring needs a one-line summary"
    assert entry.formula, f"{entry.key}: docstring needs an indented formula block"
    assert entry.source, f"{entry.key}: docstring needs a 'Source:' paragraph"


def test_doc_lists_every_registered_name():
    text = DOC.read_text(encoding="utf-8")
    missing = [e.key for _, e in ALL if f"| `{e.key}` |" not in text]
    assert not missing, f"docs/objectives.md lacks {missing}; regenerate it"


def test_doc_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == catalogue.render(), (
        "regenerate: python -m rewardjax.objectives.catalogue > docs/objectives.md"
    )


def test_docstring_parser():
    def fn():
        """Summary line.

          a = b + c
          d = e

        More text.

        Args:
          x: indented, not a formula.

        Source: "A Paper"; a
        framework.
        """

    assert catalogue.parse_docstring(fn) == (
        "Summary line.",
        "a = b + c<br>d = e",
        '"A Paper"; a framework.',
    )
