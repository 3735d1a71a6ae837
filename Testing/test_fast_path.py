"""Faster must not mean different: each fast path finds the lesions plain fp32 finds.

The network is SpotNetwork (helpers_fast_path.py), a fixed three-layer CNN that finds the
three spheres of spot_case as lesions; the whole Predictor path runs (model grid, frames,
batches, brain margin, mapping back, lesion extraction). Criteria of issue 7: the same
lesions, each matched one to one with Dice >= 0.99 of the binarised maps, confidences within
0.02.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.fast_path import (COMPILE_NOTICE, FastNetwork, SpeedOptions, fold_batch_norm, inference_copy,
                                      skip_padding_taps)
from BrainMetSegLib.frames import prepare_case
from BrainMetSegLib.network import build_network
from BrainMetSegLib.predict import Prediction, Predictor, predict_probability
from helpers_fast_path import SPOT_AFFINE, SPOTS, SpotNetwork, dice, matched_lesions, spot_case, spot_model_folder
from helpers_predict import write_sphere_case

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spot_model(tmp_path_factory) -> Path:
    return spot_model_folder(tmp_path_factory.mktemp("spot") / "spot")


def _predict(folder: Path, batch_size: int = 5, **speed) -> Prediction:
    predictor = Predictor(folder, device="cpu", batch_size=batch_size, **speed)
    predictor.network = SpotNetwork()
    return predictor.predict(spot_case())


@pytest.fixture(scope="module")
def reference(spot_model) -> Prediction:
    return _predict(spot_model, precision="fp32")


def _assert_same_lesions(reference: Prediction, fast: Prediction) -> None:
    assert dice(reference.components > 0, fast.components > 0) >= 0.99
    pairs = matched_lesions(reference.components, reference.lesions, fast.components, fast.lesions)
    assert len(pairs) == len(reference.lesions) == len(fast.lesions)
    for lesion, other, overlap in pairs:
        assert overlap >= 0.99, f"lesion {lesion.index}: Dice {overlap:.4f}"
        assert abs(lesion.confidence - other.confidence) <= 0.02
        assert np.linalg.norm(np.subtract(lesion.centroid_ras, other.centroid_ras)) < 0.5


def test_fp32_reference_finds_the_three_spheres(reference):
    assert reference.frames == 26 and reference.model_slices == 34
    assert len(reference.lesions) == 3
    centres = [(SPOT_AFFINE @ np.array([*centre, 1.0]))[:3] for centre, _, _ in SPOTS]
    for lesion, centre in zip(reference.lesions, centres):  # brightest sphere = most confident lesion
        assert np.linalg.norm(np.asarray(lesion.centroid_ras) - centre) < 1.0
    assert [lesion.confidence for lesion in reference.lesions] == sorted(
        [lesion.confidence for lesion in reference.lesions], reverse=True)
    assert set(reference.timings) == {"prepare", "network", "map_back", "lesions"}
    assert all(seconds >= 0 for seconds in reference.timings.values())


@pytest.mark.parametrize("precision", ["bf16", "bf16-weights"])
def test_bf16_on_the_cpu_finds_the_same_lesions(spot_model, reference, precision):
    fast = _predict(spot_model, precision=precision)
    # the low precision really ran: probabilities differ, by rounding only
    assert 1e-3 < float(np.abs(fast.probability - reference.probability).max()) < 0.2
    _assert_same_lesions(reference, fast)


def test_compiled_network_finds_the_same_lesions_and_says_it_compiles(spot_model, reference):
    """torch.compile on the CPU (tens of seconds here for this tiny network). 26 brain slices
    in batches of 4: the last batch is padded to 4 frames so one compilation serves all."""
    predictor = Predictor(spot_model, device="cpu", batch_size=4, compile=True)
    predictor.network = SpotNetwork()
    messages = []
    compiled = predictor.predict(spot_case(), progress=lambda f, m: messages.append(m))
    assert any(COMPILE_NOTICE in m for m in messages)
    _assert_same_lesions(reference, compiled)
    fast = predictor.fast_network()
    assert fast.calls == 7 and fast.static_shapes
    messages.clear()
    again = predictor.predict(spot_case(), progress=lambda f, m: messages.append(m))
    assert not any(COMPILE_NOTICE in m for m in messages)
    assert predictor.fast_network() is fast and fast.calls == 14
    np.testing.assert_array_equal(again.probability, compiled.probability)


def test_channels_last_on_the_cpu_is_the_default_and_changes_nothing(spot_model, reference):
    predictor = Predictor(spot_model, device="cpu", batch_size=5)
    assert predictor.speed == SpeedOptions() and predictor.speed.describe(torch.device("cpu")) == \
        "fp32, channels_last, padding taps skipped, batch norm folded"
    predictor.network = SpotNetwork()
    default = predictor.predict(spot_case())
    assert predictor.network.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(default.probability, reference.probability, atol=1e-5)


def test_a_plain_module_is_left_as_it_is_on_the_cpu(spot_model):
    """Validation during CPU training passes the training network itself: it must stay as it is."""
    network = build_network("mobilenet_v3_large")
    predictor = Predictor(spot_model, device="cpu")
    predict_probability(network, prepare_case(spot_case(), [2.0, 2.0], 2.0, [40, 40]), torch.device("cpu"))
    assert all(type(m) is nn.Conv2d for m in network.modules() if isinstance(m, nn.Conv2d))
    assert all(m.weight.is_contiguous() for m in network.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.BatchNorm2d) for m in network.modules())  # not folded
    assert predictor.speed.skip_padding_taps and predictor.speed.fold_batch_norm


def test_a_channels_last_module_is_fed_nhwc_frames_and_gives_the_same_map():
    """The trainer's network is NHWC on the CPU too; validating it must feed it NHWC frames
    (oneDNN would otherwise convert every layer), keep it NHWC, and give the NCHW map."""
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large").eval()
    prepared = prepare_case(spot_case(), [2.0, 2.0], 2.0, [40, 40])
    plain = predict_probability(network, prepared, torch.device("cpu"))
    network.to(memory_format=torch.channels_last)
    stem = next(m for m in network.modules() if isinstance(m, nn.Conv2d))
    layouts = []
    stem.register_forward_pre_hook(
        lambda module, inputs: layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    nhwc = predict_probability(network, prepared, torch.device("cpu"))
    assert layouts and all(layouts)
    assert not stem.weight.is_contiguous() and stem.weight.is_contiguous(memory_format=torch.channels_last)
    assert float(plain.max()) > 0
    np.testing.assert_allclose(nhwc, plain, atol=1e-5)


def test_skipping_padding_taps_is_exact_on_deeplab():
    """MobileNetV3 DeepLabv3 at 320 pixels: a 20x20 map in the ASPP, so the convolutions dilated
    by 24 and 36 take the 1x1 path and the one dilated by 12 the full one; same logits."""
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large").eval()
    frames = torch.randn(1, 20, 320, 320)
    with torch.inference_mode():
        expected = network(frames)
        keys = list(network.state_dict())
        assert skip_padding_taps(network) == 3
        dilations = sorted(m.dilation[0] for m in network.modules() if type(m).__name__ == "_CentreTapConv2d")
        assert dilations == [12, 24, 36]
        assert list(network.state_dict()) == keys
        torch.testing.assert_close(network(frames), expected, atol=1e-5, rtol=1e-5)


def _deeplab_with_trained_statistics(backbone: str) -> nn.Module:
    """A network whose batch norms hold statistics and affine parameters far from their
    initial 0/1, as after training, so that folding them is not a no-op."""
    torch.manual_seed(0)
    network = build_network(backbone)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
            assert module.running_mean.shape == (channels,)
    return network.eval()


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "resnet50"])
def test_folding_batch_norm_into_the_convolutions_keeps_the_logits(backbone):
    """Every batch norm of DeepLabv3 follows a convolution in a Sequential; all are folded, the
    same logits come out (float rounding only), and no BatchNorm entry is left to load."""
    network = _deeplab_with_trained_statistics(backbone)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in network.modules())
    frames = torch.randn(2, 20, 64, 64)
    with torch.inference_mode():
        expected = network(frames)
        assert fold_batch_norm(network) == norms
        assert not any(isinstance(m, nn.BatchNorm2d) for m in network.modules())
        assert not any("running_mean" in key for key in network.state_dict())
        folded = network(frames)
    assert float((expected[:, 1] - expected[:, 0]).abs().max()) > 0.1  # the logits are not trivial
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)


def test_a_batch_norm_not_after_a_convolution_is_left():
    sequence = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    assert fold_batch_norm(sequence) == 0
    assert [type(m) for m in sequence] == [nn.BatchNorm2d, nn.Conv2d, nn.ReLU, nn.BatchNorm2d]


def test_validation_copy_is_folded_and_leaves_the_training_network_as_it_was():
    """The trainer validates through inference_copy between steps: its network keeps training
    mode, its batch norms and its weights, and the copy gives the network's eval-mode map."""
    network = _deeplab_with_trained_statistics("mobilenet_v3_large").train()
    network.to(memory_format=torch.channels_last)
    before = {key: value.clone() for key, value in network.state_dict().items()}
    copy = inference_copy(network, torch.device("cpu"))
    assert isinstance(copy, FastNetwork) and copy.module is not network
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.module.modules())
    prepared = prepare_case(spot_case(), [2.0, 2.0], 2.0, [40, 40])
    folded = predict_probability(copy, prepared, torch.device("cpu"))
    assert network.training and all(m.training for m in network.modules())
    assert network.state_dict().keys() == before.keys()
    assert all(torch.equal(network.state_dict()[key], value) for key, value in before.items())
    plain = predict_probability(network, prepared, torch.device("cpu"))  # sets eval mode: last
    assert float(plain.max()) > 0
    np.testing.assert_allclose(folded, plain, atol=1e-5)


@pytest.mark.parametrize("options, message", [
    (dict(precision="fp8"), "precision: 'fp8'; expected one of auto, fp32, bf16, fp16, bf16-weights"),
    (dict(precision="fp16"), "precision: fp16 runs on CUDA only, not on cpu; use fp32 or bf16 there"),
    (dict(cuda_graphs=True), "cuda_graphs: CUDA graphs need a CUDA device; got cpu"),
    (dict(compile="yes"), "compile: expected True or False, got 'yes'"),
])
def test_impossible_speed_options_are_refused_with_the_reason(spot_model, options, message):
    with pytest.raises(BrainMetSegError) as error:
        Predictor(spot_model, device="cpu", **options)
    assert str(error.value) == message


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "BrainMetSeg"))
    return subprocess.run([sys.executable, "-m", "BrainMetSegLib", "predict", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_cli_speed_options(tmp_path, spot_model):
    write_sphere_case(tmp_path)
    refused = _cli("--model", str(spot_model), "--case", str(tmp_path), "--out", str(tmp_path / "a"),
                   "--device", "cpu", "--precision", "fp16")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: precision: fp16 runs on CUDA only, not on cpu; use fp32 or bf16 there"
    bad_margin = _cli("--model", str(spot_model), "--case", str(tmp_path), "--out", str(tmp_path / "b"),
                      "--brain-margin", "wide")
    assert bad_margin.returncode == 2
    assert "argument --brain-margin: 'wide' is not a number of mm (or 'none')" in bad_margin.stderr
    negative = _cli("--model", str(spot_model), "--case", str(tmp_path), "--out", str(tmp_path / "c"),
                    "--brain-margin", "-1")
    assert negative.returncode == 2
    assert negative.stderr.strip().startswith("error: brain margin: -1.0 mm; expected a number of mm >= 0")
    done = _cli("--model", str(spot_model), "--case", str(tmp_path), "--out", str(tmp_path / "d"), "--device", "cpu",
                "--precision", "bf16", "--brain-margin", "none")
    assert done.returncode == 0, done.stderr
    assert "(bf16 autocast, channels_last, padding taps skipped, batch norm folded)" in done.stdout.splitlines()[0]
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "lesions.csv", "lesions.nii.gz", "lesions.seg.nrrd", "probability.nii.gz"]
