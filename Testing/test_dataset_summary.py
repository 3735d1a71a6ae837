"""The dataset summary the export panel shows: cases, lesions, label status, rejections per split."""
from __future__ import annotations

import numpy as np

from BrainMetSegLib.dataset import CaseEntry, read_dataset, write_case, write_dataset_json
from BrainMetSegLib.dataset_summary import count_label_lesions, format_summary, summarize_dataset
from BrainMetSegLib.volumes import Volume, write_volume
from helpers_train import case_volumes, lesion_spheres, write_tiny_dataset


def dataset_with_every_status(root):
    """The tiny training dataset (3 train, 1 val; partial, complete, partial, complete) plus an
    unlabelled test case and two rejected candidates."""
    write_tiny_dataset(root, statuses=["partial", "complete", "partial", "complete"],
                       rejected={"Mets_001": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]})
    volumes, _ = case_volumes(9)
    folder = write_case(root, "Mets_005", volumes)
    cases = read_dataset(root).cases + [CaseEntry("Mets_005", folder, "test", "none")]
    write_dataset_json(root, cases)
    return root


def test_counts_per_split_and_in_total(tmp_path):
    root = dataset_with_every_status(tmp_path / "data")
    lesions = [len(lesion_spheres(seed)) for seed in range(4)]
    fractions = []
    summary = summarize_dataset(root, progress=lambda fraction, message: fractions.append(fraction))
    train, val, test = (summary.splits[name] for name in ("train", "val", "test"))
    assert (train.cases, train.complete, train.partial, train.unlabelled, train.lesions, train.rejected) == \
        (3, 1, 2, 0, sum(lesions[:3]), 2)
    assert (val.cases, val.complete, val.partial, val.lesions) == (1, 1, 0, lesions[3])
    assert (test.cases, test.unlabelled, test.lesions) == (1, 1, 0)
    assert (summary.total.cases, summary.total.lesions, summary.total.partial) == (5, sum(lesions), 2)
    assert summary.has_partial
    assert fractions == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert format_summary(summary).splitlines() == [
        "split  cases  complete  partial  unlabelled  lesions  rejected",
        f"train      3         1        2           0  {sum(lesions[:3]):>7}         2",
        f"val        1         1        0           0  {lesions[3]:>7}         0",
        "test       1         0        0           1        0         0",
        f"total      5         2        2           1  {sum(lesions):>7}         2",
    ]


def test_without_lesion_counts_no_label_is_read(tmp_path):
    root = dataset_with_every_status(tmp_path / "data")
    (root / "Mets_001" / "seg.nii.gz").write_bytes(b"not a volume")  # would fail if it were read
    summary = summarize_dataset(read_dataset(root), count_lesions=False)
    assert summary.total.lesions is None and summary.splits["train"].lesions is None
    assert summary.total.cases == 5
    assert format_summary(summary).splitlines()[1].split()[5] == "-"


def test_a_complete_only_dataset_has_no_partial_labels(tmp_path):
    summary = summarize_dataset(write_tiny_dataset(tmp_path / "data"))
    assert not summary.has_partial and summary.total.complete == 4


def test_lesion_counts_follow_a_rewritten_label(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    path = root / "Mets_002" / "seg.nii.gz"
    assert count_label_lesions(path) == len(lesion_spheres(1))
    _, label = case_volumes(1)
    one = np.zeros_like(label.array)
    one[5:8, 5:8, 5:8] = 1
    one[5, 5, 9] = 1  # a second lesion: not 26-connected to the cube (a gap of one slice)
    one[9, 9, 9] = 1  # touches nothing either
    write_volume(Volume(one, label.affine), path)
    assert count_label_lesions(path) == 3
    assert summarize_dataset(root).splits["train"].lesions == len(lesion_spheres(0)) + 3 + len(lesion_spheres(2))
