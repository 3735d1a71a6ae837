"""Where a synthetic cohort came from, as the experiment report states it.

A result on the synthetic cohort means something only if the cohort was not tuned towards it:
its parameters are frozen in `synth_params.PRESETS`, tuned on a development seed, and every
change is logged with its reason (docs/synthetic-data.md). The report therefore says which
preset and seed generated the data and whether the parameters recorded in `synth.json` are
still this version's built-in preset, naming every one that is not.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .synth import SYNTH_JSON
from .synth_params import PRESETS

Change = Tuple[str, Any, Any]
"""(dotted parameter name, built-in value, value the cohort was generated with)."""


@dataclass(frozen=True)
class CohortProvenance:
    generator: str
    preset: Optional[str]
    """None when synth.json does not record the generation (then nothing else is known)."""
    seed: Optional[int] = None
    cases: Optional[int] = None
    changes: Optional[List[Change]] = None
    """None when the preset is unknown to this version (nothing to compare with)."""
    val_cases: Optional[int] = None
    """The `--val-cases` the cohort was split with; None for the preset's validation share."""

    def sentence(self) -> str:
        """One line for the report."""
        if self.preset is None:
            return (f"synthetic ({self.generator}); its synth.json does not record the preset, seed and "
                    "parameters, so whether the cohort was changed is unknown")
        split = "" if self.val_cases is None else f" ({self.val_cases} of them validation cases, `--val-cases`)"
        head = (f"synthetic, `brainmetseg synth` preset `{self.preset}`, seed {self.seed}, {self.cases} cases{split} "
                f"({self.generator})")
        if self.changes is None:
            return f"{head}; this version has no built-in preset `{self.preset}` to compare its parameters with"
        if not self.changes:
            return f"{head}; generation parameters identical to this version's built-in `{self.preset}` preset"
        listed = "; ".join(f"{name}: {json.dumps(built_in)} → {json.dumps(used)}"
                           for name, built_in, used in self.changes)
        return (f"{head}; {len(self.changes)} generation parameter(s) differ from this version's built-in "
                f"`{self.preset}` preset (built-in → used): {listed}")

    def to_json(self) -> Dict[str, object]:
        return {"generator": self.generator, "preset": self.preset, "seed": self.seed, "cases": self.cases,
                "val_cases": self.val_cases,
                "changed_parameters": None if self.changes is None else
                [{"name": name, "built_in": built_in, "used": used} for name, built_in, used in self.changes]}


def parameter_changes(built_in: Any, used: Any, prefix: str = "") -> List[Change]:
    """Every leaf where two parameter documents (as JSON values) differ, by dotted name."""
    if isinstance(built_in, dict) and isinstance(used, dict):
        changes: List[Change] = []
        for key in sorted(set(built_in) | set(used)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in used or key not in built_in:
                changes.append((name, built_in.get(key), used.get(key)))
            else:
                changes += parameter_changes(built_in[key], used[key], name)
        return changes
    return [] if built_in == used else [(prefix, built_in, used)]


def cohort_provenance(root: Path) -> Optional[CohortProvenance]:
    """The provenance of the synthetic cohort in `root`, or None for data without synth.json.

    A report is written after hours of training, so a synth.json it cannot read is stated in
    the report rather than refused."""
    path = Path(root) / SYNTH_JSON
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return CohortProvenance(f"{SYNTH_JSON} unreadable: {error}", None)
    if not isinstance(document, dict):
        return CohortProvenance(f"{SYNTH_JSON} is not a JSON object", None)
    generator = str(document.get("generator", "unknown generator"))
    name, seed, params, cases = (document.get(key) for key in ("preset", "seed", "params", "cases"))
    if not (isinstance(name, str) and isinstance(seed, int) and isinstance(params, dict) and isinstance(cases, list)):
        return CohortProvenance(generator, None)
    built_in = PRESETS.get(name)
    # JSON round trip: tuples in the dataclass become lists, as in the file
    changes = None if built_in is None else parameter_changes(json.loads(json.dumps(built_in.to_json())), params)
    val_cases = document.get("val_cases")
    return CohortProvenance(generator, name, seed, len(cases), changes,
                            val_cases if isinstance(val_cases, int) and not isinstance(val_cases, bool) else None)
