"""The trainer on a tiny dataset: its pieces by hand, then real `brainmetseg train` processes
(killed with SIGKILL, stopped with SIGTERM, resumed) against an uninterrupted run."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from BrainMetSegLib.case import case_from_volumes
from BrainMetSegLib.collapse_watch import validation_verdict
from BrainMetSegLib.dataset import write_case
from BrainMetSegLib.events import read_events
from BrainMetSegLib.frames import prepare_case, stack_frames
from BrainMetSegLib.losses import LopsidedBootstrapLoss, WeightedCrossEntropyLoss
from BrainMetSegLib.model_card import SYNTHETIC_WARNING, card_text
from BrainMetSegLib.model_folder import load_model_folder
from BrainMetSegLib.network import build_network
from BrainMetSegLib.train import (CARD_METRICS, LR_FLOOR, bootstrap_steps, learning_rate,
                                  status_loss, validation_probability)
from BrainMetSegLib.train_data import Augmentation, SliceStoreBuilder, draw_batch
from BrainMetSegLib.train_options import RUN_FILES
from helpers_train import CASE_IDS, SPACING_MM, TRAIN_ARGS, case_volumes, write_tiny_dataset

RUN_ARGS = TRAIN_ARGS + ["--epochs", "2", "--steps-per-epoch", "5", "--checkpoint-every", "2", "--log-every", "1",
                         "--seed", "5"]
"""10 steps in 2 epochs, a checkpoint every 2 steps inside an epoch."""
ENV = dict(os.environ, OMP_NUM_THREADS="1")
"""One thread per process: the test machine's cores are shared, and oversubscribed threads
make every step many times slower."""


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process training on one thread too (see ENV)


# ---------------------------------------------------------------------------------- pieces


def test_status_loss_gives_partial_frames_lopsided_and_complete_frames_weighted_ce():
    alpha, beta = 3.0, 0.1
    # two frames of 1 x 2 pixels: pixel 0 predicted lesion but labelled 0, pixel 1 lesion labelled 1
    pixel_logits = [(-0.5, 1.5), (0.0, 3.0)]
    logits = torch.tensor([[[[z[c] for z in pixel_logits]] for c in range(2)]] * 2)  # 2 x 2 x 1 x 2
    target = torch.tensor([[[0, 1]], [[0, 1]]], dtype=torch.uint8)
    bootstrap = torch.tensor([True, False])  # frame 0 from a partial case, frame 1 from a complete one

    def ce(z, cls):
        return -z[cls] + math.log(math.exp(z[0]) + math.exp(z[1]))

    z0, z1 = pixel_logits
    partial_frame = [beta * ce(z0, 0) + (1 - beta) * ce(z0, 1), alpha * ce(z1, 1)]  # argmax of z0 is 1
    complete_frame = [ce(z0, 0), alpha * ce(z1, 1)]
    expected = sum(partial_frame + complete_frame) / 4
    loss = status_loss(logits, target, None, bootstrap, LopsidedBootstrapLoss(alpha, beta),
                       WeightedCrossEntropyLoss(alpha))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    every_frame_lopsided = status_loss(logits, target, None, torch.tensor([True, True]),
                                       LopsidedBootstrapLoss(alpha, beta), WeightedCrossEntropyLoss(alpha))
    assert every_frame_lopsided.item() == pytest.approx(sum(partial_frame) / 2, rel=1e-6)
    # a known negative turns the bootstrap term of that pixel back into plain CE
    known = torch.tensor([[[True, False]], [[False, False]]])
    with_known = status_loss(logits, target, known, bootstrap, LopsidedBootstrapLoss(alpha, beta),
                             WeightedCrossEntropyLoss(alpha))
    assert with_known.item() == pytest.approx(sum([ce(z0, 0), alpha * ce(z1, 1)] + complete_frame) / 4, rel=1e-6)


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    total, peak = 100, 1e-3
    assert learning_rate(0, total, peak, 0.05) == pytest.approx(peak / 5)
    assert learning_rate(4, total, peak, 0.05) == pytest.approx(peak)
    assert learning_rate(5, total, peak, 0.05) == pytest.approx(peak)
    assert learning_rate(52, total, peak, 0.05) == pytest.approx(peak * (LR_FLOOR + (1 - LR_FLOOR) / 2))
    assert learning_rate(99, total, peak, 0.05) == pytest.approx(peak * LR_FLOOR)
    lrs = [learning_rate(step, total, peak, 0.05) for step in range(5, total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert bootstrap_steps(10, 0.3) == 3 and bootstrap_steps(16, 0.3) == 5 and bootstrap_steps(10, 0.0) == 0


@pytest.fixture(scope="module")
def prepared_cases():
    prepared = []
    for number, case_id in enumerate(CASE_IDS[:3]):
        volumes, label = case_volumes(number)
        case = case_from_volumes(volumes, label, case_id=case_id)
        prepared.append(prepare_case(case, (SPACING_MM, SPACING_MM), SPACING_MM, (32, 32)))
    return prepared


@pytest.fixture()
def store(prepared_cases):
    builder = SliceStoreBuilder()
    for number, prepared in enumerate(prepared_cases):
        builder.add(prepared, bootstrap=number == 1)
    return builder.build(torch.device("cpu"))


def test_validation_zeroes_probability_beyond_the_brain_margin_as_predict_does(prepared_cases):
    from BrainMetSegLib.brain_margin import DEFAULT_BRAIN_MARGIN_MM, brain_neighbourhood

    network = torch.nn.Conv2d(20, 2, kernel_size=1)  # says "lesion" (p = 0.993) everywhere
    with torch.no_grad():
        network.weight.zero_()
        network.bias.copy_(torch.tensor([0.0, 5.0]))
    prepared = prepared_cases[0]
    probability = validation_probability(network, prepared, torch.device("cpu"), batch_size=4)
    near = brain_neighbourhood(prepared.brain, prepared.affine, DEFAULT_BRAIN_MARGIN_MM, torch.device("cpu")).numpy()
    brain_slices = prepared.brain.any(axis=(1, 2))
    assert (~near[brain_slices]).any() and near[brain_slices].any()
    assert np.all(probability[~near] == 0.0)
    assert np.allclose(probability[near & brain_slices[:, None, None]], torch.sigmoid(torch.tensor(5.0)).item())


def test_frames_are_those_of_stack_frames_within_each_case(store, prepared_cases):
    depth = prepared_cases[0].shape[0]
    assert store.slices == 3 * depth
    second = torch.from_numpy(prepared_cases[1].images).permute(1, 0, 2, 3).contiguous()
    local = torch.tensor([0, 1, depth // 2, depth - 1])  # edges repeat the case's own edge slices
    frames = store.frames_at(local + depth, 5)
    assert torch.equal(frames, stack_frames(second, local, 5))
    assert store.bootstrap.tolist() == [False] * depth + [True] * depth + [False] * depth


def test_sampler_depends_only_on_seed_and_step_and_over_represents_lesion_slices(store):
    first = draw_batch(7, 3, store, 16, 0.5)
    assert torch.equal(first, draw_batch(7, 3, store, 16, 0.5))
    assert not torch.equal(first, draw_batch(7, 4, store, 16, 0.5))
    assert not torch.equal(first, draw_batch(8, 3, store, 16, 0.5))
    lesion = set(store.lesion_slices.tolist())
    brain = set(store.brain_slices.tolist())
    assert len(lesion) < len(brain) / 2
    counts = [sum(int(i) in lesion for i in draw_batch(0, step, store, 16, 0.5)) for step in range(20)]
    assert min(counts) >= 8  # half of every batch from lesion slices, plus those drawn among all brain slices
    assert all(int(i) in brain for step in range(20) for i in draw_batch(0, step, store, 16, 0.5))


def test_augmentation_moves_labels_with_images_and_rescales_inside_the_brain_only(store):
    centres = store.lesion_slices[:2]
    plain = store.batch(centres, None, torch.device("cpu"))
    height, width = store.size
    scale = torch.ones(2, 4)
    scale[:, 2] = 2.0  # bravo doubled
    augmentation = Augmentation(flip=torch.tensor([True, False]), scale=scale, shift=torch.zeros(2, 4),
                                translation=torch.tensor([[2, -3], [0, 1]]))
    moved = store.batch(centres, augmentation, torch.device("cpu"))
    for n, (dy, dx) in enumerate(augmentation.translation.tolist()):
        rows = np.clip(np.arange(height) - dy, 0, height - 1)
        columns = np.clip(np.arange(width) - dx, 0, width - 1)
        if augmentation.flip[n]:
            columns = width - 1 - columns
        expected = plain.frames[n].numpy()[:, rows][:, :, columns].copy()
        expected[10:15] *= 2.0  # bravo's five slices; zeros outside the brain stay zero
        np.testing.assert_allclose(moved.frames[n].numpy(), expected, rtol=1e-6)
        np.testing.assert_array_equal(moved.target[n].numpy(), plain.target[n].numpy()[rows][:, columns])
        np.testing.assert_array_equal(moved.brain[n].numpy(), plain.brain[n].numpy()[rows][:, columns])
        assert moved.target[n].any()


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(store):
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large")
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    batch = store.batch(draw_batch(0, 0, store, 4, 0.5), None, torch.device("cpu"))
    chosen, complete = LopsidedBootstrapLoss(3.0, 1.0), WeightedCrossEntropyLoss(3.0)
    network.train()
    losses = []
    for _ in range(6):
        loss = status_loss(network(batch.frames), batch.target, None, batch.bootstrap, chosen, complete)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# ---------------------------------------------------------------------------------- real runs


def _command(dataset: Path, run: Path, *extra: str) -> List[str]:
    return [sys.executable, "-m", "BrainMetSegLib", "train", "--dataset", str(dataset), "--out", str(run),
            *RUN_ARGS, *extra]


def _train(dataset: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(dataset, run, *extra), capture_output=True, text=True, env=ENV, timeout=600)


def _wait_for(run: Path, process: subprocess.Popen, condition, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = read_events(run / "events.jsonl") if (run / "events.jsonl").exists() else []
        found = [event for event in events if condition(event)]
        if found:
            return found[0]
        assert process.poll() is None, f"training ended early: {process.communicate()}"
        time.sleep(0.05)
    process.kill()
    raise AssertionError("timed out waiting for an event")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("data"), statuses=["complete", "partial", "complete", "complete"],
                              rejected={"Mets_001": [[0.0, 0.0, 0.0]]}, synthetic=True)


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = _train(dataset, run)
    assert result.returncode == 0, result.stderr
    return run, result


def test_events_of_a_run_are_well_formed(uninterrupted):
    run, result = uninterrupted
    events = read_events(run / "events.jsonl")
    names = [event["event"] for event in events]
    assert names[0] == "started" and names[-1] == "finished"
    assert names.count("epoch") == 2 and names.count("step") == 10
    assert {"checkpoint"} <= set(names) and "failed" not in names and "stopped" not in names
    steps = [event for event in events if event["event"] == "step"]
    assert [event["step"] for event in steps] == list(range(1, 11))
    for event in steps:
        assert math.isfinite(event["loss"]) and event["lr"] > 0 and event["eta_s"] >= 0
        assert event["epoch"] == (1 if event["step"] <= 5 else 2)
    assert [e["phase"] for e in steps[:3]] == ["warm-up (beta 1)"] * 3 and steps[3]["phase"] == "lopsided (beta 0.1)"
    epochs = [event for event in events if event["event"] == "epoch"]
    for event in epochs:
        assert 0.0 <= event["validation"]["ap"] <= 1.0 and event["validation"]["n_lesions"] > 0
        assert 0.0 <= event["train_positive_share"] <= 1.0 and "collapse" in event
    checkpoints = [(event["step"], event["reason"]) for event in events if event["event"] == "checkpoint"]
    assert checkpoints == [(2, "step"), (4, "step"), (5, "epoch"), (6, "step"), (8, "step"), (10, "epoch")]
    assert events[0]["options"]["loss"] == "lopsided" and events[0]["resumed_from"] is None
    assert events[-1]["model"] == str(run / "model")
    assert f"model: {run / 'model'}" in result.stdout
    assert {path.name for path in run.iterdir()} <= set(RUN_FILES)


def test_the_model_folder_loads_and_records_how_it_was_made(uninterrupted):
    run, _ = uninterrupted
    network, config = load_model_folder(run / "model")
    assert config.backbone == "mobilenet_v3_large" and config.in_plane_size == [32, 32]
    assert config.output_stride == network.output_stride == 8
    assert config.pixel_spacing_mm == [2.0, 2.0] and config.slice_spacing_mm == 2.0
    assert 0.0 <= config.operating_point <= 1.0
    training = config.training
    assert training["loss"] == "lopsided" and training["alpha"] == 3.0 and training["beta"] == 0.1
    assert training["data"]["train_label_status"] == {"partial": 1, "complete": 2}
    assert training["data"]["known_negative_cases"] == 1
    assert training["selection"].startswith("best validation AP on the 1 complete-label val case")
    epochs = [e for e in read_events(run / "events.jsonl") if e["event"] == "epoch"]
    best = max(epochs, key=lambda e: e["validation"]["ap"])  # the first of equal APs
    assert training["selected_epoch"] == best["epoch"]
    assert training["validation"] == {key: best["validation"][key] for key in CARD_METRICS}
    assert config.synthetic_training_data is True and SYNTHETIC_WARNING in card_text(config)
    with torch.no_grad():
        assert network(torch.zeros(2, 20, 32, 32)).shape == (2, 2, 32, 32)


def test_validation_scores_the_selected_model_as_predict_will_use_it(uninterrupted):
    """Model selection and the operating point judge the map users get: the recorded validation
    metrics are those of `predict` scored by `evaluate_case` (model and case grids coincide here)."""
    from BrainMetSegLib.metrics import evaluate_case, summarise
    from BrainMetSegLib.predict import Predictor
    from BrainMetSegLib.train import VALIDATION_THRESHOLD

    run, _ = uninterrupted
    predictor = Predictor(run / "model", device="cpu")
    volumes, label = case_volumes(CASE_IDS.index("Mets_004"))
    case = case_from_volumes(volumes, label, case_id="Mets_004")
    prediction = predictor.predict(case)
    summary = summarise([evaluate_case(prediction.probability, case.label, case.affine,
                                       threshold=VALIDATION_THRESHOLD, case_id="Mets_004")])
    recorded = predictor.config.training["validation"]
    for key in ("ap", "max_sensitivity", "fp_per_case", "n_lesions"):
        assert summary[key] == pytest.approx(recorded[key], abs=1e-6), key


def test_killed_and_stopped_run_resumes_to_the_uninterrupted_result(dataset, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    run = tmp_path / "killed"
    process = subprocess.Popen(_command(dataset, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    _wait_for(run, process, lambda e: e["event"] == "checkpoint" and e["reason"] == "step")
    process.send_signal(signal.SIGKILL)
    process.wait()
    names = [e["event"] for e in read_events(run / "events.jsonl")]
    assert "epoch" not in names and "finished" not in names  # killed mid-epoch 1

    changed = _train(dataset, run, "--resume", "--alpha", "2")
    assert changed.returncode == 2
    assert f"error: {run}: --resume with options that differ" in changed.stderr and "--alpha: 3.0" in changed.stderr

    process = subprocess.Popen(_command(dataset, run, "--resume"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=ENV)
    started = _wait_for(run, process, lambda e: e["event"] == "started" and e["resumed_from"])
    assert started["resumed_from"] >= 2
    _wait_for(run, process, lambda e: e["event"] == "step" and e["step"] > started["resumed_from"] + 1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert "training stopped at step" in stderr.decode()
    stopped = read_events(run / "events.jsonl")[-1]
    assert stopped["event"] == "stopped" and stopped["reason"] == "SIGTERM"

    finished = _train(dataset, run, "--resume")
    assert finished.returncode == 0, finished.stderr
    assert read_events(run / "events.jsonl")[-1]["event"] == "finished"
    for name in ("model/model.safetensors", "checkpoint.safetensors"):
        expected, found = load_file(str(reference / name)), load_file(str(run / name))
        assert sorted(expected) == sorted(found)
        for key in expected:
            assert torch.allclose(expected[key].double(), found[key].double(), rtol=1e-6, atol=1e-7), (name, key)
    expected_json = json.loads((reference / "model" / "model.json").read_text())["training"]
    found_json = json.loads((run / "model" / "model.json").read_text())["training"]
    assert found_json["validation"] == expected_json["validation"]
    assert found_json["selected_epoch"] == expected_json["selected_epoch"]


def test_refuses_to_start_in_an_existing_run_without_resume(uninterrupted, dataset):
    run, _ = uninterrupted
    before = (run / "events.jsonl").read_text()
    result = _train(dataset, run)
    assert result.returncode == 2
    assert f"error: {run}: already exists; pass --resume to continue the run in it" in result.stderr
    assert (run / "events.jsonl").read_text() == before


def test_a_folder_with_a_launchers_files_only_is_not_a_run(tmp_path):
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.train_options import TrainOptions, check_run_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "log.txt").write_text("launched\n")
    (run / "job.json").write_text("{}")
    options = TrainOptions(dataset=tmp_path, out=run).normalised()
    check_run_folder(options)
    (run / "events.jsonl").write_text("")
    with pytest.raises(BrainMetSegError, match=f"{run}: already exists; pass --resume"):
        check_run_folder(options)


def test_refuses_to_resume_a_folder_that_is_not_a_run(dataset, tmp_path):
    (tmp_path / "other").mkdir()
    result = _train(dataset, tmp_path / "other", "--resume")
    assert result.returncode == 2
    assert f"error: {tmp_path / 'other' / 'options.json'}: missing; {tmp_path / 'other'} is not a training run" \
        in result.stderr


def test_bad_option_is_refused_naming_it(dataset, tmp_path):
    result = _train(dataset, tmp_path / "run", "--beta", "0")
    assert result.returncode == 2
    assert "error: beta (--beta): 0.0; must be in (0, 1]" in result.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("field, value, message", [
    ("loss", "dice", "loss (--loss): 'dice'; choose one of ce, bootstrap, lopsided"),
    ("alpha", 0.0, "alpha (--alpha): 0.0; must be a positive number"),
    ("warmup_fraction", 1.5, "warmup_fraction (--warmup-fraction): 1.5; must be a number in [0, 1]"),
    ("batch_size", 1, "batch_size (--batch-size): 1; at least 2 frames"),
    ("in_plane_size", 8, "in_plane_size (--in-plane-size): 8; at least 16 pixels"),
    ("checkpoint_every", -1, "checkpoint_every (--checkpoint-every): -1; must be 0"),
    ("censor_mode", "random", "censor_mode (--censor-mode): 'random'; choose one of none, stochastic, size"),
    ("pixel_spacing", -1.0, "pixel_spacing (--pixel-spacing): -1.0; must be a positive number of mm"),
    ("seed", -3, "seed (--seed): -3; must be an integer >= 0"),
    ("backbone", "vgg", "backbone (--backbone): 'vgg'; choose one of"),
    ("output_stride", 0, "output_stride (--output-stride): 0; must be a positive integer"),
])
def test_impossible_options_are_refused_naming_the_option(field, value, message, tmp_path):
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.train_options import TrainOptions, check_options

    options = TrainOptions(dataset=tmp_path, out=tmp_path / "run", **{field: value})
    with pytest.raises(BrainMetSegError) as error:
        check_options(options)
    assert str(error.value).startswith(message)


def test_fine_tuning_refuses_a_backbone_other_than_the_models():
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.model_card import ModelConfig
    from BrainMetSegLib.train_options import TrainOptions, resolve_options

    config = ModelConfig(name="m", backbone="resnet50", in_plane_size=[64, 64], pixel_spacing_mm=[1.5, 1.5])
    options = TrainOptions(dataset=Path("d"), out=Path("r"), init_model="m", backbone="mobilenet_v3_large")
    with pytest.raises(BrainMetSegError, match=r"backbone \(--backbone\): 'mobilenet_v3_large', but the model to "
                                               r"fine-tune \(m\) is a resnet50"):
        resolve_options(options, "cpu", config)
    resolved = resolve_options(TrainOptions(dataset=Path("d"), out=Path("runs/r1"), init_model="m"), "cpu", config)
    assert (resolved.backbone, resolved.in_plane_size, resolved.pixel_spacing) == ("resnet50", 64, 1.5)
    assert resolved.model_name == "r1"
    cpu = resolve_options(TrainOptions(dataset=Path("d"), out=Path("r")), "cpu")
    gpu = resolve_options(TrainOptions(dataset=Path("d"), out=Path("r")), "cuda")
    assert (cpu.backbone, gpu.backbone, cpu.in_plane_size) == ("mobilenet_v3_large", "resnet50", 256)
    assert (cpu.output_stride, gpu.output_stride, resolved.output_stride) == (16, 8, 8)


def test_output_stride_follows_the_fine_tuned_model_and_must_suit_the_backbone():
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.model_card import ModelConfig
    from BrainMetSegLib.train_options import TrainOptions, resolve_options

    config = ModelConfig(name="m", backbone="mobilenet_v3_large", output_stride=4)
    assert resolve_options(TrainOptions(dataset=Path("d"), out=Path("r"), init_model="m"), "cpu",
                           config).output_stride == 4
    with pytest.raises(BrainMetSegError, match=r"^output_stride \(--output-stride\): 16; a resnet50 is built "
                                               r"with output stride 8$"):
        resolve_options(TrainOptions(dataset=Path("d"), out=Path("r"), backbone="resnet50", output_stride=16), "cpu")


def test_a_dataset_without_labelled_training_cases_is_refused(tmp_path):
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.train import train
    from BrainMetSegLib.train_options import TrainOptions

    dataset = write_tiny_dataset(tmp_path / "data", statuses=["none", "none", "none", "complete"])
    options = TrainOptions(dataset=dataset, out=tmp_path / "run", device="cpu", in_plane_size=32,
                           pixel_spacing=2.0, slice_spacing=2.0)
    with pytest.raises(BrainMetSegError, match=r"data: no training case with a label \(split 'train'"):
        train(options)
    assert read_events(tmp_path / "run" / "events.jsonl")[-1]["event"] == "failed"


def test_cancel_stops_cleanly_and_resume_refuses_changed_training_data(tmp_path):
    from BrainMetSegLib.errors import BrainMetSegError
    from BrainMetSegLib.train import TrainingStopped, train
    from BrainMetSegLib.train_options import TrainOptions

    dataset = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    options = TrainOptions(dataset=dataset, out=run, device="cpu", in_plane_size=32, pixel_spacing=2.0,
                           slice_spacing=2.0, batch_size=2, epochs=1, steps_per_epoch=3, workers=1)
    messages = []
    with pytest.raises(TrainingStopped, match="training stopped at step 1 after saving a checkpoint"):
        train(options, progress=lambda fraction, message: messages.append((fraction, message)), cancel=lambda: True)
    last = read_events(run / "events.jsonl")[-2:]
    assert [e["event"] for e in last] == ["checkpoint", "stopped"] and last[1]["reason"] == "cancel"
    assert messages[0] == (0.0, "reading and preparing cases") and messages[-1][1].startswith("step 1 of 3")

    document = json.loads((dataset / "dataset.json").read_text())
    document["cases"][2]["split"] = "val"
    (dataset / "dataset.json").write_text(json.dumps(document))
    resumed = TrainOptions(**{**options.__dict__, "resume": True})
    with pytest.raises(BrainMetSegError, match=r"run: the training data or its epochs changed since the run started"):
        train(resumed)


def test_on_the_fly_censoring_trains_on_the_labels_of_the_censored_copy(tmp_path):
    from BrainMetSegLib.censored_copy import write_censored_copy
    from BrainMetSegLib.dataset import read_dataset
    from BrainMetSegLib.train import train
    from BrainMetSegLib.train_options import TrainOptions

    dataset = write_tiny_dataset(tmp_path / "data")
    copy_report = write_censored_copy(dataset, tmp_path / "copy", "size", 0.5, 0)
    options = TrainOptions(dataset=dataset, out=tmp_path / "run", device="cpu", in_plane_size=32, pixel_spacing=2.0,
                           slice_spacing=2.0, batch_size=2, epochs=1, steps_per_epoch=1, workers=1,
                           censor_mode="size", censor_rate=0.5)
    model = train(options)

    written = json.loads((tmp_path / "run" / "censoring.json").read_text())
    assert written["removed"] == copy_report.removed > 0
    assert [case["removed"] for case in written["cases"]] == [case.to_json()["removed"] for case in copy_report.cases]
    lesion_slices = 0
    for entry in read_dataset(tmp_path / "copy").split("train"):
        prepared = prepare_case(entry.load(), (SPACING_MM, SPACING_MM), SPACING_MM, (32, 32))
        lesion_slices += int(np.count_nonzero(prepared.label.any(axis=(1, 2)) & prepared.brain.any(axis=(1, 2))))
    training = json.loads((model / "model.json").read_text())["training"]
    assert training["data"]["train_lesion_slices"] == lesion_slices
    assert training["data"]["train_label_status"] == {"partial": 3, "complete": 0}
    assert training["censoring"]["mode"] == "size" and training["censoring"]["removed"] == copy_report.removed
    assert training["selection"] == "best validation AP on the 1 val case(s) with censored labels (no complete-label val case)"


def test_without_validation_cases_the_last_epoch_is_kept_and_the_summary_says_so(tmp_path):
    from BrainMetSegLib.train import train
    from BrainMetSegLib.train_options import TrainOptions

    dataset = write_tiny_dataset(tmp_path / "data", statuses=["complete", "partial", "complete", "none"])
    options = TrainOptions(dataset=dataset, out=tmp_path / "run", device="cpu", in_plane_size=32, pixel_spacing=2.0,
                           slice_spacing=2.0, batch_size=2, epochs=2, steps_per_epoch=1, workers=1, uniform_loss=True,
                           model_name="no-validation")
    _, config = load_model_folder(train(options))
    training = config.training
    assert training["selection"] == "no labelled validation case: the last epoch is kept"
    assert training["selected_epoch"] == 2 and training["validation"] is None
    assert training["loss_by_label_status"] == "lopsided on every case"
    assert training["data"]["unlabelled_cases_skipped"] == ["Mets_004"]
    assert config.operating_point == config.probability_threshold == 0.1 and config.name == "no-validation"
    epochs = [e for e in read_events(tmp_path / "run" / "events.jsonl") if e["event"] == "epoch"]
    assert [e["selected"] for e in epochs] == [True, True] and "validation" not in epochs[0]


def test_a_run_that_finds_none_of_the_validation_lesions_is_flagged_at_every_epoch(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data")
    volumes, _ = case_volumes(3)
    _, elsewhere = case_volumes(0)  # the val case's lesions labelled where its images show none
    write_case(dataset, CASE_IDS[3], volumes, elsewhere, overwrite=True)
    result = _train(dataset, tmp_path / "run")
    assert result.returncode == 0, result.stderr
    events = read_events(tmp_path / "run" / "events.jsonl")
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["validation"]["max_sensitivity"] for e in epochs] == [0.0, 0.0] and epochs[0]["step"] > 3  # past warm-up
    for event in epochs:
        verdict = validation_verdict(event["val_positive_share"], event["val_label_share"], event["validation"],
                                     f"epoch {event['epoch']}, validation")
        assert verdict is not None and verdict in event["collapse"] and "--lr" in verdict
    assert events[-1]["summary"]["collapse"] == [e["collapse"] for e in epochs]
    assert "warning: epoch 2, validation: " in result.stderr


def test_fine_tuning_starts_from_the_given_model(uninterrupted, dataset, tmp_path):
    from BrainMetSegLib.train import train
    from BrainMetSegLib.train_options import TrainOptions

    source = uninterrupted[0] / "model"
    options = TrainOptions(dataset=dataset, out=tmp_path / "tuned", device="cpu", batch_size=2, epochs=1,
                           steps_per_epoch=1, workers=1, lr=1e-12, init_model=str(source))
    tuned, config = load_model_folder(train(options))
    original, original_config = load_model_folder(source)
    assert (config.backbone, config.in_plane_size, config.pixel_spacing_mm, config.output_stride) == (
        original_config.backbone, original_config.in_plane_size, original_config.pixel_spacing_mm,
        original_config.output_stride)
    assert config.training["init_model"] == str(source)
    originals = dict(original.named_parameters())
    for name, parameter in tuned.named_parameters():  # one step of a vanishing learning rate
        assert torch.allclose(parameter, originals[name], atol=1e-6), name
