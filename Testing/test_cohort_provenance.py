"""The report's account of a synthetic cohort: preset, seed and every parameter that differs
from the built-in preset, read from the synth.json of a real generated cohort."""
from __future__ import annotations

import json

import pytest

from BrainMetSegLib.cohort_provenance import cohort_provenance, parameter_changes
from BrainMetSegLib.synth import SYNTH_JSON, write_cohort
from BrainMetSegLib.synth_changelog import COHORT_CHANGES, CohortChange, field_name, unknown_parameters
from BrainMetSegLib.synth_params import PRESETS


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "synth"
    write_cohort(root, 3, seed=5, preset_name="small")
    return root


def _rewrite(root, change):
    document = json.loads((root / SYNTH_JSON).read_text())
    change(document)
    (root / SYNTH_JSON).write_text(json.dumps(document))


def test_a_generated_cohort_is_identical_to_its_preset(cohort):
    provenance = cohort_provenance(cohort)
    assert (provenance.preset, provenance.seed, provenance.cases, provenance.changes) == ("small", 5, 3, [])
    assert "preset `small`, seed 5, 3 cases" in provenance.sentence()
    assert "identical to this version's built-in `small` preset" in provenance.sentence()
    assert provenance.to_json()["changed_parameters"] == [] and provenance.val_cases is None


def test_every_changed_parameter_is_named_with_both_values(cohort, tmp_path):
    copy = tmp_path / "changed"
    copy.mkdir()
    (copy / SYNTH_JSON).write_bytes((cohort / SYNTH_JSON).read_bytes())

    def change(document):
        document["params"]["subtle_probability"] = 0.4
        document["params"]["contrast"]["flair"]["lesion"] = [1.0, 1.3]
        del document["params"]["falx_thickness_mm"]

    _rewrite(copy, change)
    provenance = cohort_provenance(copy)
    small = PRESETS["small"]
    assert provenance.changes == [
        ("contrast.flair.lesion", list(small.contrast["flair"]["lesion"]), [1.0, 1.3]),
        ("falx_thickness_mm", small.falx_thickness_mm, None),
        ("subtle_probability", small.subtle_probability, 0.4),
    ]
    sentence = provenance.sentence()
    assert "3 generation parameter(s) differ" in sentence
    assert f"subtle_probability: {small.subtle_probability} → 0.4" in sentence


def test_a_cohort_split_with_val_cases_says_so(tmp_path):
    root = tmp_path / "synth"
    write_cohort(root, 4, seed=5, preset_name="small", val_cases=2)
    provenance = cohort_provenance(root)
    assert provenance.val_cases == 2 and provenance.changes == []
    assert "seed 5, 4 cases (2 of them validation cases, `--val-cases`)" in provenance.sentence()
    assert provenance.to_json()["val_cases"] == 2


def test_a_preset_this_version_lacks_is_said_so(cohort, tmp_path):
    (tmp_path / SYNTH_JSON).write_bytes((cohort / SYNTH_JSON).read_bytes())
    _rewrite(tmp_path, lambda document: document.update(preset="retired"))
    provenance = cohort_provenance(tmp_path)
    assert provenance.preset == "retired" and provenance.changes is None
    assert "no built-in preset `retired`" in provenance.sentence()


@pytest.mark.parametrize("content", ['{"format": 1, "generator": "a script"}', "{not json", "[1, 2]"])
def test_a_synth_json_without_the_generation_is_reported_not_refused(tmp_path, content):
    (tmp_path / SYNTH_JSON).write_text(content)
    provenance = cohort_provenance(tmp_path)
    assert provenance.preset is None and "is unknown" in provenance.sentence()


def test_data_without_synth_json_have_no_cohort_provenance(tmp_path):
    assert cohort_provenance(tmp_path) is None


def test_parameter_changes_compares_leaves():
    assert parameter_changes({"a": [1, 2], "b": {"c": 1}}, {"a": [1, 2], "b": {"c": 1}}) == []
    assert parameter_changes({"a": [1, 2], "b": {"c": 1}}, {"a": [1, 3], "b": {"c": 1, "d": 2}}) == [
        ("a", [1, 2], [1, 3]), ("b.d", None, 2)]


def test_the_change_log_names_real_parameters_and_catches_a_misspelt_one():
    assert unknown_parameters() == []
    misspelt = (CohortChange("2026-01-01", ("subtle_probabilty", "small.deep_vessels"), "a typo"),)
    assert unknown_parameters(misspelt) == ["subtle_probabilty"]


def test_the_change_log_accounts_for_every_parameter_an_older_cohort_differs_in(cohort, tmp_path):
    """A cohort written with the parameters from before the logged changes (as the committed
    docs/results reports were) differs from today's presets only in logged parameters."""
    older = tmp_path / "older"
    older.mkdir()
    (older / SYNTH_JSON).write_bytes((cohort / SYNTH_JSON).read_bytes())
    before = {"subtle_probability": 0.15, "subtle_enhancement": [1.15, 1.45], "vessel_se_fraction": [0.15, 0.55],
              "oedema_diameters_mm": [4.0, 14.0], "deep_vessels": [15, 25]}
    _rewrite(older, lambda document: document["params"].update(before))
    logged = {field_name(name) for change in COHORT_CHANGES for name in change.parameters}
    changed = {name for name, _, _ in cohort_provenance(older).changes}
    assert changed == set(before) and changed <= logged
