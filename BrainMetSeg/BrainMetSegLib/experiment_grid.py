"""The paper's experiment grids (Yi et al. 2020, Tables 1-3) as data, and the runs they need.

A *row* is one line of a table: which labels the network trains on (full, or 50% of the
lesions censored stochastically or by size), the loss (α, β) and the share of the training
cases used. A *run* is a row trained with one seed. Tables share rows (the uncensored
(3, 1) baseline on all cases is row 1 of every table), and a shared row is one run, trained
once. The run id is derived from the row and the seed only, so a run folder is found again
by a later invocation (resuming, adding seeds, rebuilding the report).

Key rows (the product's promise: full CE, censored CE, censored lopsided (3, 0.1), for both
censoring modes) are run with every seed asked for; the other rows with the first seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import BrainMetSegError

CENSOR_RATE = 0.5
"""The paper's harsh false-negative rate, for both censoring modes."""

CENSOR_TITLES = {"none": "Full", "stochastic": "1/2 censored (stochastic)", "size": "1/2 censored (size-based)"}
TABLE_TITLES = {
    1: "Table 1: stochastic lesion censoring with FN rate 50%",
    2: "Table 2: size-based lesion censoring with FN rate 50%",
    3: "Table 3: performance with respect to patient count",
}
TABLE_NUMBERS = (1, 2, 3)


@dataclass(frozen=True)
class Row:
    """One line of a paper table."""

    censor: str          # "none", "stochastic" or "size"
    alpha: float
    beta: float
    fraction: float = 1.0
    """Share of the training cases (Table 3's patient counts 10/30/100 of 100 are 0.1/0.3/1.0)."""

    @property
    def loss(self) -> str:
        """β = 1 is plain weighted CE (eq. 1); any other β is the lopsided bootstrap (eq. 3)."""
        return "ce" if self.beta == 1 else "lopsided"

    @property
    def censor_rate(self) -> float:
        return 0.0 if self.censor == "none" else CENSOR_RATE

    @property
    def data_title(self) -> str:
        return CENSOR_TITLES[self.censor]

    @property
    def percent(self) -> int:
        return int(round(self.fraction * 100))

    @property
    def loss_label(self) -> str:
        return f"{self.alpha:g}, {self.beta:g}"

    @property
    def short_label(self) -> str:
        """The row in a figure legend or a sentence: "stochastic 30% (3, 0.1)"."""
        data = {"none": "full", "stochastic": "stochastic", "size": "size-based"}[self.censor]
        share = "" if self.fraction >= 1 else f" {self.percent}%"
        return f"{data}{share} ({self.loss_label})"

    def key(self) -> str:
        """Stable text for the row: part of the run id and of results.json."""
        data = "full" if self.censor == "none" else f"{self.censor}{int(round(self.censor_rate * 100))}"
        return f"{data}-a{self.alpha:g}-b{self.beta:g}-n{self.percent:03d}"

    def to_json(self) -> Dict[str, object]:
        return {"key": self.key(), "censor": self.censor, "censor_rate": self.censor_rate, "alpha": self.alpha,
                "beta": self.beta, "loss": self.loss, "fraction": self.fraction}


def _censored_rows(censor: str) -> Tuple[Row, ...]:
    """The paper's order: (3,1), (10,1), (3,0.5), (10,0.5), (3,0.1), (10,0.1)."""
    return tuple(Row(censor, alpha, beta) for beta in (1.0, 0.5, 0.1) for alpha in (3.0, 10.0))


BASELINE = Row("none", 3.0, 1.0)
"""Uncensored training on every case with (α, β) = (3, 1): what every row is compared with."""

TABLES: Dict[int, Tuple[Row, ...]] = {
    1: (BASELINE,) + _censored_rows("stochastic"),
    2: (BASELINE,) + _censored_rows("size"),
    3: (Row("none", 3.0, 1.0, 0.1), Row("none", 3.0, 1.0, 0.3), BASELINE,
        Row("stochastic", 3.0, 0.1, 0.3), Row("stochastic", 3.0, 0.1),
        Row("size", 3.0, 0.1, 0.3), Row("size", 3.0, 0.1)),
}

KEY_ROWS: Tuple[Row, ...] = (
    BASELINE,
    Row("stochastic", 3.0, 1.0), Row("stochastic", 3.0, 0.1),
    Row("size", 3.0, 1.0), Row("size", 3.0, 0.1),
)

FIGURE3_ROWS: Tuple[Row, ...] = (BASELINE, Row("stochastic", 3.0, 1.0), Row("stochastic", 3.0, 0.1),
                                 Row("size", 3.0, 1.0), Row("size", 3.0, 0.1))
"""Paper Fig. 3 shows Table 1 rows 1, 2 and 6; the size-based pair is added alongside."""


@dataclass(frozen=True)
class Run:
    row: Row
    seed: int

    @property
    def run_id(self) -> str:
        return f"{self.row.key()}-s{self.seed}"


def check_tables(tables: Optional[Sequence[int]]) -> Tuple[int, ...]:
    if tables is None:
        return TABLE_NUMBERS
    chosen = tuple(dict.fromkeys(int(t) for t in tables))
    unknown = [t for t in chosen if t not in TABLES]
    if not chosen or unknown:
        raise BrainMetSegError(f"--tables: {', '.join(str(t) for t in unknown) or 'none given'}; "
                               f"expected some of {', '.join(str(t) for t in TABLE_NUMBERS)}")
    return tuple(sorted(chosen))


def check_seeds(seeds: Sequence[int]) -> Tuple[int, ...]:
    chosen = tuple(dict.fromkeys(seeds))
    if not chosen or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in chosen):
        raise BrainMetSegError(f"--seeds: {list(seeds)!r}; expected one or more distinct integers >= 0")
    return chosen


def rows_of(tables: Sequence[int]) -> List[Row]:
    """Distinct rows of the tables, in table order."""
    return list(dict.fromkeys(row for table in check_tables(tables) for row in TABLES[table]))


def seeds_for(row: Row, seeds: Sequence[int]) -> Tuple[int, ...]:
    return tuple(seeds) if row in KEY_ROWS else tuple(seeds[:1])


def plan_runs(tables: Sequence[int], seeds: Sequence[int], key_rows_only: bool = False) -> List[Run]:
    """Every run the tables need, each once; all first-seed runs come first, so that an
    interrupted grid already fills every table before the extra seeds start. With
    `key_rows_only`, only the rows of KEY_ROWS (the comparison the product rests on, with
    every seed) when a whole grid does not fit the time at hand."""
    seeds = check_seeds(seeds)
    rows = [row for row in rows_of(tables) if row in KEY_ROWS or not key_rows_only]
    return [Run(row, seed) for seed in seeds for row in rows if seed in seeds_for(row, seeds)]


def select_runs(runs: Sequence[Run], run_ids: Sequence[str]) -> List[Run]:
    """The runs of a grid named by `run_ids` (--only), in the grid's order: one grid shared by
    several processes or GPUs, each training its own runs into the same folder."""
    known = [run.run_id for run in runs]
    unknown = [run_id for run_id in run_ids if run_id not in known]
    if unknown:
        raise BrainMetSegError(f"--only: {', '.join(unknown)} not a run of this grid (check --tables, --seeds and "
                               f"--key-rows-only); its runs are {', '.join(known)}")
    wanted = set(run_ids)
    return [run for run in runs if run.run_id in wanted]
