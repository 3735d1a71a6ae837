"""The key rows read the way a detector is judged: sensitivity at matched false-positive rates
(FROC), and lopsided minus CE paired by seed.

Max sensitivity takes every confidence, however many false positives that costs, so it favours
a network that calls more. A loss that finds more lesions only at several times the false
positives has not shown that it finds them better; at the same false-positive rate it has.
Pairing by seed (same initial weights, sampling and censored lesions) removes the seed-to-seed
spread that on a small cohort is larger than the differences sought.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from .experiment import RunOutcome
from .experiment_grid import KEY_ROWS, Row, Run, rows_of, seeds_for
from .seed_statistics import mean_sd, mean_sd_text

PAIRS = tuple((Row(censor, 3.0, 0.1), Row(censor, 3.0, 1.0)) for censor in ("stochastic", "size"))
"""(lopsided, CE) trained on the same censored labels: the product's promise is the first
keeping sensitivity that the second loses."""
PAIRED_METRICS = ("ap", "max_sensitivity", "fp_per_case")


def finished_summaries(row: Row, seeds: Sequence[int], outcomes: Mapping[str, RunOutcome]) -> Dict[int, dict]:
    """Seed -> evaluation summary of the row's finished runs (of the seeds it is planned with)."""
    found = {}
    for seed in seeds_for(row, seeds):
        outcome = outcomes.get(Run(row, seed).run_id)
        if outcome is not None and outcome.evaluation is not None:
            found[seed] = outcome.evaluation["summary"]
    return found


def _froc_metrics(summaries: Sequence[dict]) -> List[str]:
    """The FP rates the summaries were scored at, in the order `evaluate` wrote them."""
    return [f"froc@{rate}" for rate in (summaries[0]["froc"] if summaries else {})]


def _value(summary: dict, metric: str) -> Optional[float]:
    if metric.startswith("froc@"):
        return summary["froc"].get(metric[len("froc@"):])
    return summary[metric]


def _difference(first: Optional[float], second: Optional[float]) -> Optional[float]:
    return None if first is None or second is None else first - second


def _mean_sd_entry(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    mean, sd, _ = mean_sd(values)
    return {"mean": mean, "sd": sd}


def froc_rows(rows: Sequence[Row], seeds: Sequence[int],
              outcomes: Mapping[str, RunOutcome]) -> List[Dict[str, object]]:
    """Per row: FP per case and sensitivity at each FROC rate, mean and sd over its seeds."""
    result = []
    for row in rows:
        summaries = finished_summaries(row, seeds, outcomes)
        metrics = ["fp_per_case"] + _froc_metrics(list(summaries.values()))
        result.append({"row": row.to_json(), "label": row.short_label, "seeds_done": sorted(summaries),
                       **{metric: _mean_sd_entry([_value(s, metric) for s in summaries.values()])
                          for metric in metrics}})
    return result


def paired_difference(better: Row, worse: Row, seeds: Sequence[int],
                      outcomes: Mapping[str, RunOutcome]) -> Optional[Dict[str, object]]:
    """`better` minus `worse` seed by seed, on the seeds both finished; None when they share none."""
    first, second = finished_summaries(better, seeds, outcomes), finished_summaries(worse, seeds, outcomes)
    common = [seed for seed in seeds if seed in first and seed in second]
    if not common:
        return None
    differences = {}
    for metric in PAIRED_METRICS + tuple(_froc_metrics([first[common[0]]])):
        per_seed = [_difference(_value(first[s], metric), _value(second[s], metric)) for s in common]
        differences[metric] = {"per_seed": per_seed, **_mean_sd_entry(per_seed)}
    return {"better": better.to_json(), "worse": worse.to_json(), "label": f"{better.short_label} − {worse.short_label}",
            "seeds": common, "differences": differences}


def key_row_comparison(tables: Sequence[int], seeds: Sequence[int],
                       outcomes: Mapping[str, RunOutcome]) -> Dict[str, object]:
    """The FROC rows and the paired differences of the key rows that the chosen tables hold."""
    present = set(rows_of(tables))
    rows = [row for row in KEY_ROWS if row in present]
    pairs = [paired_difference(better, worse, seeds, outcomes)
             for better, worse in PAIRS if better in present and worse in present]
    return {"froc": froc_rows(rows, seeds, outcomes), "paired": [pair for pair in pairs if pair is not None]}


# ---------------------------------------------------------------------------------- text


def _signed(value: Optional[float], scale: float, digits: int) -> str:
    """"+3", "-2", and "0" where the rounded value is zero (no "+0" or "-0.0")."""
    if value is None:
        return "–"
    text = f"{scale * value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def _unit_after(number: str, unit: str) -> str:
    """" points", but " point" after exactly one ("+1 point", "-1 point")."""
    if not unit:
        return ""
    return f" {unit[:-1]}" if unit.endswith("s") and number.lstrip("+-") == "1" else f" {unit}"


def _difference_text(name: str, entry: Dict[str, object], scale: float, digits: int, unit: str) -> str:
    """One metric's paired difference: mean ± sd then each seed's, or the single seed's value."""
    per_seed = entry["per_seed"]
    if len(per_seed) == 1:  # type: ignore[arg-type]
        value = _signed(per_seed[0], scale, digits)  # type: ignore[index]
        return f"{name} {value}{_unit_after(value, unit)}"
    sd = entry["sd"]
    summary = _signed(entry["mean"], scale, digits) + ("" if sd is None else f" ± {scale * sd:.{digits}f}")  # type: ignore[operator]
    each = ", ".join(_signed(v, scale, digits) for v in per_seed)  # type: ignore[union-attr]
    return f"{name} {summary}{' ' + unit if unit else ''} ({each})"


def format_comparison(comparison: Dict[str, object]) -> str:
    """Markdown: the FROC table of the key rows, then the paired differences."""
    rows = [row for row in comparison["froc"] if row["seeds_done"]]  # type: ignore[union-attr]
    if not rows:
        return ""
    rates = [metric[len("froc@"):] for metric in rows[0] if str(metric).startswith("froc@")]
    head = ["Model", "FP per case"] + [f"Sens. at {rate} FP/case" for rate in rates] + ["Seeds"]
    lines = ["### Key rows at matched false positives (FROC)", "",
             "Sensitivity in percent at the confidence cut-off that leaves at most that many false positives per "
             "test case, mean ± sd over seeds; *FP per case* counts every predicted lesion that is not a true "
             "positive (the operating point of max sensitivity). A loss that finds more lesions only by calling "
             "more shows it here.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [row["label"], mean_sd_text(**row["fp_per_case"])] \
            + [mean_sd_text(**row[f"froc@{rate}"], scale=100, digits=0, sd_digits=1) for rate in rates] \
            + [", ".join(str(s) for s in row["seeds_done"])]  # type: ignore[union-attr]
        lines.append("| " + " | ".join(cells) + " |")
    for pair in comparison["paired"]:  # type: ignore[union-attr]
        differences = pair["differences"]
        seeds = ", ".join(str(s) for s in pair["seeds"])
        parts = [_difference_text("mAP", differences["ap"], 100, 0, "points"),
                 _difference_text("max sensitivity", differences["max_sensitivity"], 100, 0, "points")]
        parts += [_difference_text(f"sensitivity at {metric[len('froc@'):]} FP/case", entry, 100, 0, "points")
                  for metric, entry in differences.items() if metric.startswith("froc@")]
        parts.append(_difference_text("FP per case", differences["fp_per_case"], 1, 1, ""))
        intro = (f"Seed {seeds}, {pair['label']}" if len(pair["seeds"]) == 1 else
                 f"Paired by seed ({seeds}), {pair['label']}, mean ± sd of the differences (each seed's in brackets)")
        lines += ["", f"{intro}: " + "; ".join(parts) + "."]
    return "\n".join(lines)
