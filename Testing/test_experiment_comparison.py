"""The key rows at matched false-positive rates and the paired lopsided − CE differences, on
summaries whose every number is chosen so that the expected result can be worked out by hand."""
from __future__ import annotations

import pytest

from BrainMetSegLib.experiment import RunOutcome
from BrainMetSegLib.experiment_comparison import (format_comparison, froc_rows, key_row_comparison,
                                                  paired_difference)
from BrainMetSegLib.experiment_grid import BASELINE, Row, Run

CENSORED_CE, CENSORED_LOPSIDED = Row("stochastic", 3.0, 1.0), Row("stochastic", 3.0, 0.1)
SIZE_CE, SIZE_LOPSIDED = Row("size", 3.0, 1.0), Row("size", 3.0, 0.1)


def _outcome(row: Row, seed: int, ap: float, sensitivity: float, fp: float, froc: dict) -> RunOutcome:
    summary = {"ap": ap, "max_sensitivity": sensitivity, "fp_per_case": fp, "froc": froc}
    return RunOutcome(Run(row, seed), "finished", {"summary": summary})


def _froc(*values):
    return dict(zip(("0.5", "1", "2", "4", "8"), values))


def _by_id(*outcomes: RunOutcome) -> dict:
    return {outcome.run.run_id: outcome for outcome in outcomes}


OUTCOMES = _by_id(
    _outcome(BASELINE, 0, 0.40, 0.50, 4.0, _froc(0.30, 0.35, 0.40, 0.45, 0.50)),
    _outcome(BASELINE, 1, 0.20, 0.30, 6.0, _froc(0.10, 0.15, 0.20, 0.25, 0.30)),
    _outcome(CENSORED_CE, 0, 0.30, 0.30, 1.0, _froc(0.20, 0.30, 0.30, 0.30, 0.30)),
    _outcome(CENSORED_CE, 1, 0.40, 0.40, 2.0, _froc(0.30, 0.35, 0.40, 0.40, 0.40)),
    _outcome(CENSORED_LOPSIDED, 0, 0.50, 0.60, 16.0, _froc(0.30, 0.40, 0.45, 0.50, 0.55)),
    _outcome(CENSORED_LOPSIDED, 1, 0.50, 0.70, 18.0, _froc(0.40, 0.46, 0.53, 0.60, 0.65)),
    _outcome(CENSORED_LOPSIDED, 2, 0.90, 0.90, 1.0, _froc(0.90, 0.90, 0.90, 0.90, 0.90)),  # no CE partner
)


def test_froc_rows_average_each_rate_over_the_seeds_that_finished():
    rows = froc_rows([BASELINE, CENSORED_LOPSIDED, SIZE_CE], [0, 1], OUTCOMES)
    assert [r["label"] for r in rows] == ["full (3, 1)", "stochastic (3, 0.1)", "size-based (3, 1)"]
    assert rows[0]["seeds_done"] == [0, 1]
    assert rows[0]["fp_per_case"]["mean"] == pytest.approx(5.0)
    assert rows[0]["fp_per_case"]["sd"] == pytest.approx(2 ** 0.5)
    assert rows[0]["froc@2"]["mean"] == pytest.approx(0.30)
    assert rows[1]["froc@0.5"]["mean"] == pytest.approx(0.35)
    assert rows[2] == {"row": SIZE_CE.to_json(), "label": "size-based (3, 1)", "seeds_done": [],
                       "fp_per_case": {"mean": None, "sd": None}}


def test_paired_differences_use_only_the_seeds_both_rows_finished():
    pair = paired_difference(CENSORED_LOPSIDED, CENSORED_CE, [0, 1, 2], OUTCOMES)
    assert pair["seeds"] == [0, 1]  # seed 2 of the lopsided row has no CE partner
    assert pair["label"] == "stochastic (3, 0.1) − stochastic (3, 1)"
    differences = pair["differences"]
    assert differences["max_sensitivity"]["per_seed"] == pytest.approx([0.30, 0.30])
    assert differences["max_sensitivity"]["mean"] == pytest.approx(0.30)
    assert differences["max_sensitivity"]["sd"] == pytest.approx(0.0, abs=1e-12)
    assert differences["ap"]["per_seed"] == pytest.approx([0.20, 0.10])
    assert differences["fp_per_case"]["per_seed"] == pytest.approx([15.0, 16.0])
    assert differences["froc@2"]["per_seed"] == pytest.approx([0.15, 0.13])
    assert differences["froc@0.5"]["mean"] == pytest.approx(0.10)
    assert paired_difference(SIZE_LOPSIDED, SIZE_CE, [0, 1], OUTCOMES) is None


def test_a_missing_froc_value_is_left_out_of_its_pair_not_counted_as_zero():
    outcomes = _by_id(_outcome(CENSORED_LOPSIDED, 0, 0.5, 0.6, 3.0, _froc(None, 0.4, 0.5, 0.6, 0.6)),
                      _outcome(CENSORED_CE, 0, 0.3, 0.4, 1.0, _froc(0.2, 0.3, 0.4, 0.4, 0.4)))
    differences = paired_difference(CENSORED_LOPSIDED, CENSORED_CE, [0], outcomes)["differences"]
    assert differences["froc@0.5"] == {"per_seed": [None], "mean": None, "sd": None}
    assert differences["froc@1"]["mean"] == pytest.approx(0.1)


def test_comparison_takes_the_key_rows_and_pairs_of_the_chosen_tables():
    table1 = key_row_comparison([1], [0, 1], OUTCOMES)
    assert [r["label"] for r in table1["froc"]] == ["full (3, 1)", "stochastic (3, 1)", "stochastic (3, 0.1)"]
    assert [p["label"] for p in table1["paired"]] == ["stochastic (3, 0.1) − stochastic (3, 1)"]
    both = key_row_comparison([1, 2], [0, 1], OUTCOMES)
    assert len(both["froc"]) == 5 and len(both["paired"]) == 1  # the size-based pair has no finished run
    assert key_row_comparison([2], [0, 1], OUTCOMES)["paired"] == []


def test_the_markdown_names_every_rate_and_every_paired_difference():
    text = format_comparison(key_row_comparison([1, 2], [0, 1], OUTCOMES))
    lines = text.splitlines()
    assert lines[0] == "### Key rows at matched false positives (FROC)"
    assert ("| Model | FP per case | Sens. at 0.5 FP/case | Sens. at 1 FP/case | Sens. at 2 FP/case | "
            "Sens. at 4 FP/case | Sens. at 8 FP/case | Seeds |") in lines
    assert "| full (3, 1) | 5.0 ± 1.4 | 20 ± 14.1 | 25 ± 14.1 | 30 ± 14.1 | 35 ± 14.1 | 40 ± 14.1 | 0, 1 |" in lines
    assert "| stochastic (3, 0.1) | 17.0 ± 1.4 | 35 ± 7.1 | 43 ± 4.2 | 49 ± 5.7 | 55 ± 7.1 | 60 ± 7.1 | 0, 1 |" in lines
    assert not any(line.startswith("| size-based") for line in lines)  # no finished run: no empty line
    paired = [line for line in lines if line.startswith("Paired by seed (0, 1), stochastic (3, 0.1) − stochastic (3, 1)")]
    assert len(paired) == 1
    assert "mAP +15 ± 7 points (+20, +10)" in paired[0]
    assert "max sensitivity +30 ± 0 points (+30, +30)" in paired[0]
    assert "sensitivity at 2 FP/case +14 ± 1 points (+15, +13)" in paired[0]
    assert paired[0].endswith("FP per case +15.5 ± 0.7 (+15.0, +16.0).")


def test_nothing_finished_gives_no_section():
    assert format_comparison(key_row_comparison([1], [0], {})) == ""


def test_one_seed_gives_its_differences_without_a_spread_and_zero_without_a_sign():
    outcomes = _by_id(_outcome(CENSORED_LOPSIDED, 0, 0.301, 0.60, 1.02, _froc(0.2, 0.4, 0.5, 0.6, 0.6)),
                      _outcome(CENSORED_CE, 0, 0.300, 0.40, 1.0, _froc(0.2, 0.3, 0.4, 0.4, 0.4)))
    text = format_comparison(key_row_comparison([1], [0], outcomes))
    paired = text.splitlines()[-1]
    assert paired.startswith("Seed 0, stochastic (3, 0.1) − stochastic (3, 1): mAP 0 points; max sensitivity +20 points;")
    assert "sensitivity at 0.5 FP/case 0 points;" in paired and "±" not in paired
    assert paired.endswith("FP per case 0.0.")


def test_a_difference_of_one_point_is_singular():
    outcomes = _by_id(_outcome(CENSORED_LOPSIDED, 0, 0.31, 0.39, 1.0, _froc(0.2, 0.3, 0.4, 0.4, 0.4)),
                      _outcome(CENSORED_CE, 0, 0.30, 0.40, 1.0, _froc(0.2, 0.3, 0.4, 0.4, 0.4)))
    paired = format_comparison(key_row_comparison([1], [0], outcomes)).splitlines()[-1]
    assert "mAP +1 point; max sensitivity -1 point; sensitivity at 0.5 FP/case 0 points;" in paired
