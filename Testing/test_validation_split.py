"""Moving labelled training cases to the validation split (complete labels first, seeded)."""
from __future__ import annotations

import pytest

from BrainMetSegLib.dataset import read_dataset, write_dataset_json
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.validation_split import assign_validation
from helpers_train import write_tiny_dataset


def all_train(root, statuses):
    write_tiny_dataset(root, statuses=statuses)
    cases = read_dataset(root).cases
    for case in cases:
        case.split = "train"
    write_dataset_json(root, cases)
    return root


def test_complete_labels_are_chosen_first_and_the_choice_is_repeatable(tmp_path):
    statuses = ["partial", "complete", "partial", "complete"]
    root = all_train(tmp_path / "a", statuses)
    chosen = assign_validation(root, 2, seed=3)
    assert chosen == ["Mets_002", "Mets_004"]  # the two complete ones
    dataset = read_dataset(root)
    assert [c.case_id for c in dataset.split("val")] == chosen
    assert [c.case_id for c in dataset.split("train")] == ["Mets_001", "Mets_003"]
    third = assign_validation(root, 1, seed=3)  # existing val cases stay; a partial one is added
    assert len(third) == 1 and third[0] in ("Mets_001", "Mets_003")
    assert len(read_dataset(root).split("val")) == 3
    assert assign_validation(all_train(tmp_path / "b", statuses), 2, seed=3) == chosen
    three = assign_validation(all_train(tmp_path / "c", statuses), 3, seed=5)
    assert set(chosen) < set(three)


def test_seeds_choose_among_equals(tmp_path):
    picks = {tuple(assign_validation(all_train(tmp_path / str(seed), ["complete"] * 4), 1, seed=seed))
             for seed in range(8)}
    assert len(picks) > 1


@pytest.mark.parametrize("count", [0, 4, 2.5, True])
def test_impossible_counts_are_refused(tmp_path, count):
    root = all_train(tmp_path / "data", ["complete"] * 4)
    with pytest.raises(BrainMetSegError, match=f"validation cases: {count!r}; expected 1 to 3 .*4 labelled training"):
        assign_validation(root, count)
    assert read_dataset(root).split("val") == []
