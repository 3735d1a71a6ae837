"""The same grid trained twice on one cohort with the same seeds: once by one process of two
threads (docs/results/small-seed8), once by two workers of one thread each (this folder).
Prints each run's test mAP and max sensitivity in both, and how far apart they are.

    python docs/results/small-seed8-workers/compare.py
"""
import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_PROCESS = json.loads((HERE.parent / "small-seed8" / "results.json").read_text())
WORKERS = json.loads((HERE / "results.json").read_text())


def scores(results):
    return {run_id: run for run_id, run in results["runs"].items() if run["status"] in ("finished", "skipped")}


def main() -> None:
    before, after = scores(ONE_PROCESS), scores(WORKERS)
    differences = {"ap": [], "max_sensitivity": []}
    print("| run | mAP 2 threads | mAP 1 thread (workers) | max sens. 2 threads | max sens. 1 thread (workers) |")
    print("|---|---|---|---|---|")
    for run_id in sorted(set(before) & set(after)):
        cells = []
        for key in differences:
            one, two = before[run_id]["summary"][key], after[run_id]["summary"][key]
            differences[key].append(abs(one - two))
            cells += [f"{100 * one:.0f}", f"{100 * two:.0f}"]
        print(f"| {run_id} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    for key, values in differences.items():
        print(f"{key}: {len(values)} runs, |difference| median {100 * statistics.median(values):.0f} points, "
              f"largest {100 * max(values):.0f}; identical in {sum(v == 0 for v in values)}")


if __name__ == "__main__":
    main()
