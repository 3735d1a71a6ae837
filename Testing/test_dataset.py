"""Dataset folders: scanning, dataset.json schema, writing cases without clobbering them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from BrainMetSegLib.dataset import CaseEntry, read_dataset, write_case, write_dataset_json
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.roles import ROLES
from BrainMetSegLib.volumes import read_volume
from helpers_volumes import blob_case, write_case_files


def make_dataset(root, labelled=("Mets_2",), unlabelled=("Mets_10",)):
    for case_id in labelled:
        volumes, label = blob_case()
        write_case(root, case_id, volumes, label)
    for case_id in unlabelled:
        volumes, _ = blob_case(seed=1)
        write_case(root, case_id, volumes)
    return root


def test_write_case_layout(tmp_path):
    volumes, label = blob_case(spacing=(0.9, 0.9, 1.5))
    folder = write_case(tmp_path, "Mets_001", volumes, label)
    assert folder == tmp_path / "Mets_001"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{r}.nii.gz" for r in ROLES + ("seg",))
    back = read_volume(folder / "seg.nii.gz")
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, label.array)
    np.testing.assert_allclose(read_volume(folder / "flair.nii.gz").spacing, (0.9, 0.9, 1.5), atol=1e-6)


def test_scan_without_dataset_json(tmp_path):
    make_dataset(tmp_path)
    write_case_files(tmp_path / "other", suffix=".nii", with_label=False)  # any folder with the four files
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a case")
    dataset = read_dataset(tmp_path)
    assert dataset.ids == ["Mets_2", "Mets_10", "other"]
    assert [c.split for c in dataset.cases] == ["train"] * 3
    assert [c.label_status for c in dataset.cases] == ["complete", "none", "none"]
    assert dataset.get("other").image_paths()["bravo"] == tmp_path / "other" / "bravo.nii"
    case = dataset.get("Mets_2").load()
    assert case.case_id == "Mets_2" and int(case.label.sum()) == 8
    assert dataset.get("Mets_2").load(with_label=False).label is None
    assert dataset.get("Mets_10").load().label is None


def test_scan_refuses_incomplete_mets_folder(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "Mets_2" / "flair.nii.gz").unlink()
    with pytest.raises(BrainMetSegError) as info:
        read_dataset(tmp_path)
    assert str(tmp_path / "Mets_2") in str(info.value) and "no flair.nii.gz or flair.nii" in str(info.value)


def test_empty_or_missing_folder_is_refused(tmp_path):
    with pytest.raises(BrainMetSegError, match="no cases found"):
        read_dataset(tmp_path)
    with pytest.raises(BrainMetSegError, match="dataset folder not found"):
        read_dataset(tmp_path / "absent")


def test_dataset_json_round_trip(tmp_path):
    make_dataset(tmp_path, labelled=("Mets_001", "Mets_002"), unlabelled=("Mets_003",))
    entries = [CaseEntry("Mets_002", tmp_path / "Mets_002", "val", "partial", [[1.5, -2.0, 30.25]]),
               CaseEntry("Mets_001", tmp_path / "Mets_001", "train", "complete"),
               CaseEntry("Mets_003", tmp_path / "Mets_003", "test", "none")]
    write_dataset_json(tmp_path, entries)
    document = json.loads((tmp_path / "dataset.json").read_text())
    assert document == {"format": 1, "cases": [
        {"id": "Mets_002", "split": "val", "label": "partial", "rejected": [[1.5, -2.0, 30.25]]},
        {"id": "Mets_001", "split": "train", "label": "complete", "rejected": []},
        {"id": "Mets_003", "split": "test", "label": "none", "rejected": []}]}
    dataset = read_dataset(tmp_path)
    assert dataset.ids == ["Mets_002", "Mets_001", "Mets_003"]  # dataset.json's order
    assert [c.case_id for c in dataset.split("val")] == ["Mets_002"]
    assert dataset.get("Mets_002").rejected == [[1.5, -2.0, 30.25]]
    assert dataset.get("Mets_002").folder == tmp_path / "Mets_002"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_dataset_json_defaults(tmp_path):
    """Only id is required: split defaults to train, label to complete when seg exists, else none."""
    make_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": 1, "cases": [{"id": "Mets_2"}, {"id": "Mets_10"}]}))
    dataset = read_dataset(tmp_path)
    assert [(c.split, c.label_status, c.rejected) for c in dataset.cases] == [("train", "complete", []),
                                                                              ("train", "none", [])]


def test_unlisted_folders_are_not_cases(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"format": 1, "cases": [{"id": "Mets_10"}]}))
    assert read_dataset(tmp_path).ids == ["Mets_10"]


SCHEMA_ERRORS = [
    ("{not json", "not valid JSON"),
    ([1, 2], "expected a JSON object with 'format' and 'cases'"),
    ({"format": 2, "cases": []}, "unsupported format 2"),
    ({"format": 1, "cases": {"id": "Mets_2"}}, "'cases' must be a list"),
    ({"format": 1, "cases": ["Mets_2"]}, "cases[0]: expected an object"),
    ({"format": 1, "cases": [{"split": "train"}]}, "cases[0]: missing 'id'"),
    ({"format": 1, "cases": [{"id": "Mets_2", "splt": "val"}]}, "cases[0]: unknown key(s) splt"),
    ({"format": 1, "cases": [{"id": "Mets_2", "split": "validation"}]},
     "case Mets_2: unknown split 'validation'; expected one of train, val, test"),
    ({"format": 1, "cases": [{"id": "Mets_2", "label": "half"}]},
     "case Mets_2: unknown label status 'half'; expected one of complete, partial, none"),
    ({"format": 1, "cases": [{"id": "Mets_9"}]}, "case Mets_9: folder"),
    ({"format": 1, "cases": [{"id": "Mets_2", "rejected": [[1, 2]]}]}, "case Mets_2: rejected[0] is [1, 2]"),
    ({"format": 1, "cases": [{"id": "Mets_2", "rejected": [["1", 2, 3]]}]}, "rejected[0] is ['1', 2, 3]"),
    ({"format": 1, "cases": [{"id": "Mets_2", "rejected": [[1, 2, float("nan")]]}]}, "three finite numbers"),
    ({"format": 1, "cases": [{"id": "Mets_2", "rejected": 5}]}, "'rejected' must be a list"),
    ({"format": 1, "cases": [{"id": "Mets_2"}, {"id": "Mets_2"}]}, "case Mets_2 is listed twice"),
    ({"format": 1, "cases": [{"id": "../Mets_2"}]}, "invalid case id '../Mets_2'"),
    ({"format": 1, "cases": [{"id": "Mets_10", "label": "partial"}]},
     "case Mets_10: label 'partial' but no seg.nii.gz"),
]


@pytest.mark.parametrize("document, reason", SCHEMA_ERRORS)
def test_dataset_json_schema_errors(tmp_path, document, reason):
    make_dataset(tmp_path)
    text = document if isinstance(document, str) else json.dumps(document)
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(BrainMetSegError) as info:
        read_dataset(tmp_path)
    assert str(tmp_path / "dataset.json") in str(info.value) and reason in str(info.value)


def test_write_dataset_json_refuses_bad_entries(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(BrainMetSegError, match="case Mets_2: unknown split 'dev'"):
        write_dataset_json(tmp_path, [CaseEntry("Mets_2", tmp_path / "Mets_2", split="dev")])
    with pytest.raises(BrainMetSegError, match="case Mets_2 is listed twice"):
        write_dataset_json(tmp_path, [CaseEntry("Mets_2", tmp_path / "Mets_2")] * 2)
    assert not (tmp_path / "dataset.json").exists()


def test_unknown_split_and_case_lookups_are_refused(tmp_path):
    dataset = read_dataset(make_dataset(tmp_path))
    with pytest.raises(BrainMetSegError, match="unknown split 'training'"):
        dataset.split("training")
    with pytest.raises(BrainMetSegError, match="no case 'Mets_5'"):
        dataset.get("Mets_5")


def test_entry_with_label_status_but_no_seg_is_refused_on_load(tmp_path):
    make_dataset(tmp_path)
    entry = CaseEntry("Mets_10", tmp_path / "Mets_10", label_status="partial")
    with pytest.raises(BrainMetSegError, match="label 'partial' but no seg.nii.gz"):
        entry.load()


def test_write_case_never_overwrites_unless_asked(tmp_path):
    make_dataset(tmp_path)
    before = (tmp_path / "Mets_2" / "bravo.nii.gz").read_bytes()
    volumes, _ = blob_case(seed=5)
    with pytest.raises(BrainMetSegError) as info:
        write_case(tmp_path, "Mets_2", volumes)
    assert str(tmp_path / "Mets_2") in str(info.value) and "already exists" in str(info.value)
    assert "overwrite" in str(info.value)
    assert (tmp_path / "Mets_2" / "bravo.nii.gz").read_bytes() == before


def test_overwrite_replaces_the_whole_case(tmp_path):
    make_dataset(tmp_path)
    write_case_files(tmp_path / "Mets_2", suffix=".nii")  # a stale .nii twin of every file
    volumes, _ = blob_case(seed=5)
    write_case(tmp_path, "Mets_2", volumes, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "Mets_2").iterdir()) == sorted(f"{r}.nii.gz" for r in ROLES)
    np.testing.assert_array_equal(read_volume(tmp_path / "Mets_2" / "t1_gd.nii.gz").array, volumes["t1_gd"].array)


def test_write_case_refuses_bad_ids_and_roles(tmp_path):
    volumes, _ = blob_case()
    with pytest.raises(BrainMetSegError, match="invalid case id 'a/b'"):
        write_case(tmp_path, "a/b", volumes)
    del volumes["t1_pre"]
    with pytest.raises(BrainMetSegError, match="missing sequence.*t1_pre"):
        write_case(tmp_path, "Mets_1", volumes)
    assert list(tmp_path.iterdir()) == []
