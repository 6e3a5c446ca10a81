"""docs/validation.md's table is what scripts/validation.py computes now, and every row the
page calls reproduced is still within its tolerance."""

from __future__ import annotations

import pytest

from scripts.validation import BEGIN, END, PAGE, Row, table, validation_rows


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    return validation_rows()


def page_table() -> str:
    text = PAGE.read_text()
    return text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip()


def test_the_page_shows_the_current_numbers(rows: list[Row]) -> None:
    """A model change that moves a validated number must regenerate the page
    (``scripts/validation.py --write``) and say why in its commit."""
    assert page_table() == table(rows)


def test_reproduced_rows_stay_within_their_tolerance(rows: list[Row]) -> None:
    reproduced = [row for row in rows if row.status.startswith("reproduced")]
    assert len(reproduced) >= 6
    for row in reproduced:
        assert row.tolerance is not None and abs(row.error) <= row.tolerance, row.key


def test_at_least_six_published_results_with_ours_or_a_reason(rows: list[Row]) -> None:
    assert len({row.key.rstrip("0123456789") for row in rows}) >= 6  # S, D, T, TD, B, F
    for row in rows:
        assert row.published is not None
        assert row.ours is not None or row.status == "not reproduced"
