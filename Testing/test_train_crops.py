"""Training on crops (`--crop-size`): where the crops fall, that frames and masks are cut
alike, that a real run trains on crops and still validates and saves a whole-frame model, and
that the option is checked and remembered."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from BrainMetSegLib.case import case_from_volumes
from BrainMetSegLib.dataset import read_dataset
from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.experiment import claim_folder
from BrainMetSegLib.experiment_presets import PRESETS, preset_from_json
from BrainMetSegLib.frames import prepare_case
from BrainMetSegLib.model_folder import WEIGHTS_FILE, load_model_folder
from BrainMetSegLib.train import train
from BrainMetSegLib.train_data import Augmentation, SliceStoreBuilder, crop, crop_origins, draw_crops
from BrainMetSegLib.train_options import TrainOptions, check_options, differences, resolve_options
from helpers_train import SPACING_MM, case_volumes, write_tiny_dataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _store_of_48_pixel_frames():
    """The slices of two of helpers_train's cases on 48-pixel frames of 1.5 mm (the whole brain)."""
    builder = SliceStoreBuilder()
    for seed in range(2):
        volumes, label = case_volumes(seed)
        case = case_from_volumes(volumes, label, case_id=f"Mets_{seed:03d}")
        builder.add(prepare_case(case, (1.5, 1.5), SPACING_MM, (48, 48)), bootstrap=False)
    return builder.build(torch.device("cpu"))


def _labels() -> torch.Tensor:
    """Three 40x40 frames: one lesion pixel in a corner, two lesions, none."""
    target = torch.zeros(3, 40, 40, dtype=torch.uint8)
    target[0, 39, 0] = 1
    target[1, 5:7, 30:32] = 1
    target[1, 20, 3] = 1
    return target


def test_a_frame_with_a_lesion_is_cropped_around_one_of_its_lesion_pixels_drawn_uniformly():
    target, size = _labels(), 16
    held, around_lower = [], 0
    for step in range(300):
        origins = crop_origins(target, draw_crops(3, step, 3), size)
        assert ((origins >= 0) & (origins <= 40 - size)).all()
        held.append(crop(target, origins, size).flatten(1).sum(dim=1).tolist())
        row, column = origins[1].tolist()
        around_lower += row <= 20 < row + size and column <= 3 < column + size
    assert all(counts[0] == 1 and counts[1] >= 1 and counts[2] == 0 for counts in held)
    # frame 1: 4 pixels in the upper lesion, 1 in the lower, too far apart to share a crop
    assert 0.1 * 300 < around_lower < 0.3 * 300, around_lower


def test_crops_depend_on_seed_and_step_only_and_move_over_the_frame():
    first = draw_crops(0, 5, 4)
    assert torch.equal(first, draw_crops(0, 5, 4)) and not torch.equal(first, draw_crops(0, 6, 4))
    empty = torch.zeros(4, 40, 40, dtype=torch.uint8)
    corners = torch.cat([crop_origins(empty, draw_crops(0, step, 4), 16) for step in range(100)])
    assert corners.min() == 0 and corners.max() == 24


def test_frames_labels_and_masks_are_cut_alike_after_augmentation():
    store = _store_of_48_pixel_frames()
    centres = store.lesion_slices[:2]
    augmentation = Augmentation(flip=torch.tensor([True, False]), scale=torch.ones(2, 4), shift=torch.zeros(2, 4),
                                translation=torch.tensor([[2, -3], [0, 1]]))
    whole = store.batch(centres, augmentation, torch.device("cpu"))
    draws = draw_crops(1, 0, 2)
    cut = store.batch(centres, augmentation, torch.device("cpu"), crops=(draws, 32))
    origins = crop_origins(whole.target, draws, 32)
    for n, (row, column) in enumerate(origins.tolist()):
        window = (slice(row, row + 32), slice(column, column + 32))
        assert torch.equal(cut.frames[n], whole.frames[n][(slice(None),) + window])
        assert torch.equal(cut.target[n], whole.target[n][window])
        assert torch.equal(cut.brain[n], whole.brain[n][window])
        assert cut.target[n].any()
    assert cut.frames.is_contiguous(memory_format=torch.channels_last)


def test_a_run_on_crops_trains_saves_a_whole_frame_model_and_differs_from_whole_frames(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data", synthetic=True)
    common = dict(dataset=dataset, device="cpu", in_plane_size=48, pixel_spacing=1.5, slice_spacing=2.0,
                  batch_size=2, epochs=1, steps_per_epoch=3, workers=1, backbone="mobilenet_v3_large",
                  output_stride=8)
    cropped = train(TrainOptions(out=tmp_path / "crops", crop_size=32, **common))
    whole = train(TrainOptions(out=tmp_path / "whole", **common))
    network, config = load_model_folder(cropped)
    assert config.in_plane_size == [48, 48] and config.training["crop_size"] == 32
    with torch.no_grad():
        assert network(torch.zeros(1, 20, 48, 48)).shape == (1, 2, 48, 48)
    given = json.loads((cropped.parent / "options.json").read_text())["given"]
    assert given["crop_size"] == 32
    first, second = load_file(cropped / WEIGHTS_FILE), load_file(whole / WEIGHTS_FILE)
    assert any(not torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("crop_size, in_plane_size, message", [
    (16, 192, "crop_size (--crop-size): 16; must be an integer of at least 32 pixels"),
    (200, 192, "crop_size (--crop-size): 200; larger than the 192-pixel frames (--in-plane-size) it is cut from"),
])
def test_impossible_crop_sizes_are_refused_naming_the_option(crop_size, in_plane_size, message, tmp_path):
    with pytest.raises(BrainMetSegError) as error:
        check_options(TrainOptions(dataset=tmp_path, out=tmp_path / "run", crop_size=crop_size,
                                   in_plane_size=in_plane_size))
    assert str(error.value) == message


def test_a_crop_larger_than_the_default_frames_is_refused_when_the_frame_size_is_chosen(tmp_path):
    options = TrainOptions(dataset=tmp_path, out=tmp_path / "run", crop_size=300)
    check_options(options)  # the frame size is not known yet
    with pytest.raises(BrainMetSegError, match=r"crop_size \(--crop-size\): 300; larger than the 256-pixel frames"):
        check_options(resolve_options(options, "cpu"))  # as the trainer checks the options it resolved


def test_resuming_with_another_crop_size_is_refused(tmp_path):
    stored = TrainOptions(dataset=tmp_path, out=tmp_path / "run", crop_size=64)
    assert differences(stored, TrainOptions(dataset=tmp_path, out=tmp_path / "run", crop_size=96)) == \
        ["--crop-size: 64 in the run, 96 now"]


def test_a_preset_file_written_before_crops_existed_still_reads_and_claims_its_folder(tmp_path):
    whole_frames = dataclasses.replace(PRESETS["small"], crop_size=None)  # the `small` preset before crops
    document = whole_frames.to_json()
    del document["crop_size"]
    assert preset_from_json(document, "old.json") == whole_frames
    with pytest.raises(BrainMetSegError, match=r"new\.json: crop_size \(--crop-size\): 300; larger than the 192"):
        preset_from_json(dict(document, crop_size=300), "new.json")
    data = write_tiny_dataset(tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.json").write_text(json.dumps({"preset": document, "dataset": str(data.resolve())}))
    claim_folder(out, whole_frames, read_dataset(data))  # the same settings: accepted
    with pytest.raises(BrainMetSegError, match=r"this folder holds runs of preset 'small' with other settings"):
        claim_folder(out, PRESETS["small"], read_dataset(data))  # today's `small` trains on crops
