"""Collect run.sh's nine runs into one JSON file and print the README's table.

Usage: collect.py PROBE OUT.json, PROBE holding run.sh's experiment folders out-NAME-sSEED.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List

from BrainMetSegLib.atomic import atomic_write_json
from BrainMetSegLib.seed_statistics import mean_sd, mean_sd_text

SETTINGS = {"small": "whole 192-pixel frames", "crop128": "128-pixel crops, batch 4", "crop96b8": "96-pixel crops, batch 8"}
SEEDS = (0, 1, 2)


def main(probe: Path, out: Path) -> None:
    collected = {}
    for name, label in SETTINGS.items():
        runs = {}
        for seed in SEEDS:
            run = json.loads((probe / f"out-{name}-s{seed}" / "results.json").read_text())["runs"]
            run = dict(run)[f"full-a3-b1-n100-s{seed}"]
            runs[str(seed)] = {"summary": run["summary"], "seconds": run["seconds"],
                               "selected_epoch": run["training"]["selected_epoch"]}
        collected[name] = {"setting": label, "runs": runs}
    atomic_write_json(out, collected)
    print("| development cohort, full labels, CE (3, 1), 200 steps | mAP | max sens. | FP per case | "
          "sens. at 2 FP/case | training s |")
    print("|---|---|---|---|---|---|")
    for name, entry in collected.items():
        summaries = [entry["runs"][str(s)]["summary"] for s in SEEDS]
        cells = [_cell([100 * s["ap"] for s in summaries], 0), _cell([100 * s["max_sensitivity"] for s in summaries], 0),
                 _cell([s["fp_per_case"] for s in summaries], 1), _cell([100 * s["froc"]["2"] for s in summaries], 0)]
        train = [entry["runs"][str(s)]["seconds"]["train"] for s in SEEDS]
        cells.append(f"{min(train):.0f}–{max(train):.0f}")
        print(f"| {entry['setting']} | " + " | ".join(cells) + " |")


def _cell(values: List[float], digits: int) -> str:
    """'mean ± sd (each seed)', as the experiment report prints mean and sd."""
    mean, sd, _ = mean_sd(values)
    return f"{mean_sd_text(mean, sd, digits=digits)} (" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"

if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
