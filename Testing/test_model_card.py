"""model.json fields: written, read back, every bad value refused by name; the model card text."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.model_card import FORMAT, ModelConfig, card_text

SOURCE = "/models/m/model.json"

FIELDS = [
    "format", "name", "backbone", "input_roles", "slices_per_frame", "pixel_spacing_mm", "slice_spacing_mm",
    "in_plane_size", "output_stride", "orientation", "brain_mask", "normalisation", "probability_threshold",
    "operating_point", "intended_use", "synthetic_training_data", "training", "created",
]

TRAINING = {
    "loss": "lopsided",
    "alpha": 3.0,
    "beta": 0.1,
    "censoring": {"mode": "stochastic", "rate": 0.5, "seed": 7},
    "data": {"dataset": "synthetic cohort", "train_cases": 12, "val_cases": 3},
    "epochs": 4,
    "best_epoch": 3,
    "validation": {"ap": 0.6875, "max_sensitivity": 0.8125},
}


def config(**changes) -> ModelConfig:
    return ModelConfig(name="lopsided-demo", backbone="mobilenet_v3_large", training=dict(TRAINING), **changes)


def test_defaults_follow_the_design():
    document = ModelConfig(name="m").to_json()
    assert list(document) == FIELDS
    assert document["format"] == FORMAT == 1
    assert document["backbone"] == "resnet50"
    assert document["input_roles"] == ["t1_pre", "t1_gd", "bravo", "flair"]
    assert document["slices_per_frame"] == 5
    assert document["pixel_spacing_mm"] == [0.9375, 0.9375] and document["slice_spacing_mm"] == 1.0
    assert document["in_plane_size"] == [256, 256]
    assert document["output_stride"] is None  # the backbone's default
    assert (document["orientation"], document["brain_mask"], document["normalisation"]) == (
        "closest-axial", "supplied-or-nonzero-bravo", "zscore-brain")
    assert document["probability_threshold"] == 0.1
    assert document["intended_use"] == "Research use only. Not for diagnosis."
    assert document["synthetic_training_data"] is False
    created = datetime.fromisoformat(document["created"])
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)
    assert ModelConfig(name="m").in_channels == 20
    assert ModelConfig(name="m", input_roles=["t1_gd", "bravo"], slices_per_frame=3).in_channels == 6


def test_round_trip_through_json_text():
    original = config(operating_point=0.42, synthetic_training_data=True, in_plane_size=[192, 224])
    document = json.loads(json.dumps(original.to_json()))
    assert ModelConfig.from_json(document, SOURCE) == original


def test_to_json_copies():
    original = config()
    document = original.to_json()
    document["training"]["loss"] = "ce"
    document["input_roles"].append("x")
    assert original.training["loss"] == "lopsided" and len(original.input_roles) == 4


def test_integers_accepted_for_real_numbers():
    document = config().to_json()
    document.update(pixel_spacing_mm=[1, 1], slice_spacing_mm=2, operating_point=1)
    parsed = ModelConfig.from_json(document, SOURCE)
    assert parsed.pixel_spacing_mm == [1.0, 1.0] and parsed.slice_spacing_mm == 2.0 and parsed.operating_point == 1.0


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("format", 0, "expected 1, got 0"),
        ("format", "1", "expected 1"),
        ("name", "", "expected a non-empty string"),
        ("name", 5, "expected a non-empty string"),
        ("backbone", "vgg16", "'vgg16' is not one of resnet50, resnet101, mobilenet_v3_large"),
        ("input_roles", ["bravo", "t1_pre"], "in that order"),
        ("input_roles", ["t1_pre", "t1_pre"], "expected distinct roles"),
        ("input_roles", ["t2"], "expected distinct roles"),
        ("input_roles", [], "expected distinct roles"),
        ("input_roles", "bravo", "expected distinct roles"),
        ("slices_per_frame", 4, "odd positive integer"),
        ("slices_per_frame", 5.0, "odd positive integer"),
        ("pixel_spacing_mm", [0.9, 0], "two positive numbers"),
        ("pixel_spacing_mm", [0.9], "two positive numbers"),
        ("pixel_spacing_mm", [0.9, True], "two positive numbers"),
        ("slice_spacing_mm", -1, "expected a positive number"),
        ("slice_spacing_mm", None, "expected a positive number"),
        ("in_plane_size", [256, 256.0], "two positive integers"),
        ("in_plane_size", [256, 0], "two positive integers"),
        ("output_stride", 32, "32; a mobilenet_v3_large is built with output stride 16, 8, 4"),
        ("output_stride", 8.0, "8.0; a mobilenet_v3_large is built with output stride 16, 8, 4"),
        ("orientation", "native", "'native' is not one of closest-axial"),
        ("brain_mask", "none", "is not one of supplied-or-nonzero-bravo"),
        ("normalisation", "minmax", "is not one of zscore-brain"),
        ("probability_threshold", 0, "expected a number in (0, 1)"),
        ("probability_threshold", 1.0, "expected a number in (0, 1)"),
        ("operating_point", 1.5, "expected a confidence in [0, 1]"),
        ("operating_point", float("nan"), "expected a confidence in [0, 1]"),
        ("intended_use", " ", "expected a non-empty string"),
        ("synthetic_training_data", 1, "expected true or false"),
        ("training", [], "expected a JSON object"),
        ("created", "yesterday", "not an ISO 8601 time"),
    ],
)
def test_bad_field_refused_naming_file_and_field(field, value, reason):
    document = config().to_json()
    document[field] = value
    with pytest.raises(BrainMetSegError) as raised:
        ModelConfig.from_json(document, SOURCE)
    message = str(raised.value)
    assert message.startswith(f"{SOURCE}: field '{field}': ")
    assert reason in message


def test_output_stride_is_optional_for_models_written_before_it_existed():
    document = config().to_json()
    del document["output_stride"]
    older = ModelConfig.from_json(document, SOURCE)
    assert older.output_stride is None and older.network_output_stride == 16
    document["output_stride"] = 4
    assert ModelConfig.from_json(document, SOURCE).network_output_stride == 4
    assert ModelConfig(name="m").network_output_stride == 8  # resnet50
    document = ModelConfig(name="m", output_stride=16).to_json()
    with pytest.raises(BrainMetSegError, match="16; a resnet50 is built with output stride 8$"):
        ModelConfig.from_json(document, SOURCE)


def test_created_with_z_suffix_accepted():
    document = config().to_json()
    document["created"] = "2024-05-01T12:00:00Z"
    assert ModelConfig.from_json(document, SOURCE).created == "2024-05-01T12:00:00Z"


def test_missing_and_unknown_fields_refused():
    document = config().to_json()
    del document["operating_point"], document["brain_mask"]
    with pytest.raises(BrainMetSegError, match=rf"^{SOURCE}: missing field\(s\) brain_mask, operating_point$"):
        ModelConfig.from_json(document, SOURCE)
    document = config().to_json()
    document["probabilty_threshold"] = 0.2
    with pytest.raises(BrainMetSegError, match=rf"^{SOURCE}: unknown field\(s\) 'probabilty_threshold'$"):
        ModelConfig.from_json(document, SOURCE)


def test_newer_format_asks_for_an_update():
    document = config().to_json()
    document["format"] = 2
    document["new_field"] = "x"
    with pytest.raises(BrainMetSegError, match=rf"^{SOURCE}: field 'format': format 2 is newer .* update BrainMetSeg$"):
        ModelConfig.from_json(document, SOURCE)


def test_not_an_object_refused():
    with pytest.raises(BrainMetSegError, match=rf"^{SOURCE}: expected a JSON object, got list$"):
        ModelConfig.from_json([1, 2], SOURCE)


def test_card_text_says_what_the_model_is():
    text = card_text(config(operating_point=0.42))
    assert "Model: lopsided-demo" in text
    assert "Intended use: Research use only. Not for diagnosis." in text
    assert "MobileNetV3-Large" in text
    assert "t1_pre, t1_gd, bravo, flair; 5 axial slices each (20 channels); 0.9375 x 0.9375 x 1 mm voxels" in text
    assert "Training data: dataset synthetic cohort, train_cases 12, val_cases 3\n" in text
    assert "Loss: lopsided bootstrap (eq. 3) (α=3, β=0.1)" in text
    assert "Censoring: mode stochastic, rate 0.5, seed 7" in text
    assert "Epochs: 4" in text
    assert "Validation: ap 0.6875, max_sensitivity 0.8125" in text
    assert "Best epoch: 3" in text
    assert "confidence cut-off shown by default 0.42" in text
    assert "SYNTHETIC" not in text


def test_card_text_warns_about_synthetic_training_data():
    text = card_text(config(synthetic_training_data=True))
    assert text.splitlines()[1].startswith("WARNING: SYNTHETIC DATA.")
    assert "(synthetic)" in text


def test_card_text_without_training_summary():
    text = card_text(ModelConfig(name="bare"))
    assert "Training data: not recorded" in text and "Validation: not recorded" in text
    assert "ResNet-50" in text
