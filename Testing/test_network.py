"""DeepLabv3 backbones build offline, take 20-channel frames and return logits."""
from __future__ import annotations

import pytest
import torch

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.network import BACKBONES, SegmentationNetwork, build_network


@pytest.fixture(scope="module")
def networks(tmp_path_factory: pytest.TempPathFactory):
    """Each backbone once, built with an empty torch hub folder: a download would show up there or fail."""
    hub = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(hub))
        torch.manual_seed(0)
        built = {backbone: build_network(backbone).eval() for backbone in BACKBONES}
    assert list(hub.rglob("*")) == [], "building a network downloaded something"
    return built


def test_backbones():
    assert BACKBONES == ("resnet50", "resnet101", "mobilenet_v3_large")
    assert build_network.__defaults__ == ("resnet50", 20, 2, None)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_gives_logits_of_input_size(networks, backbone):
    network = networks[backbone]
    assert isinstance(network, SegmentationNetwork)
    assert (network.backbone, network.in_channels, network.num_classes) == (backbone, 20, 2)
    with torch.no_grad():
        logits = network(torch.randn(1, 20, 64, 48))
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (1, 2, 64, 48) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_first_convolution_takes_20_channels(networks):
    for network in networks.values():
        first = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 20
        assert first.weight.std() > 0  # initialised, not left at zero


def test_parameter_counts_differ(networks):
    counts = {name: sum(p.numel() for p in net.parameters()) for name, net in networks.items()}
    assert counts["mobilenet_v3_large"] < counts["resnet50"] < counts["resnet101"]
    # torchvision's 3-channel DeepLabv3-ResNet-50 with 2 classes has 39,633,986 parameters;
    # the 20-channel stem adds 17 * 64 * 7 * 7.
    assert counts["resnet50"] == 39_633_986 + 17 * 64 * 7 * 7


def test_other_channel_and_class_counts():
    network = build_network("mobilenet_v3_large", in_channels=12, num_classes=3).eval()
    with torch.no_grad():
        assert network(torch.randn(2, 12, 32, 32)).shape == (2, 3, 32, 32)


def test_channels_last_gives_the_same_logits(networks):
    network = build_network("mobilenet_v3_large").eval()
    network.load_state_dict(networks["mobilenet_v3_large"].state_dict())
    x = torch.randn(1, 20, 64, 64)
    with torch.no_grad():
        reference = network(x)
        network = network.to(memory_format=torch.channels_last)
        result = network(x.contiguous(memory_format=torch.channels_last))
    assert result.shape == (1, 2, 64, 64)
    assert torch.allclose(result, reference, atol=1e-4)


def test_channels_last_training_step_gives_the_same_loss_and_gradients():
    """The trainer runs NHWC on every device (faster on oneDNN's CPU kernels as on tensor cores);
    one step in training mode (batch statistics) must give the loss and gradients of NCHW.
    The ASPP's dropout is switched off: its mask is drawn in memory order, so the same seed
    drops other activations in NHWC (another draw, not another computation)."""
    torch.manual_seed(0)
    nchw = build_network("mobilenet_v3_large").train()
    nhwc = build_network("mobilenet_v3_large").train()
    nhwc.load_state_dict(nchw.state_dict())
    nhwc.to(memory_format=torch.channels_last)
    for network in (nchw, nhwc):
        for module in network.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()
    x = torch.randn(2, 20, 48, 48)
    target = (torch.rand(2, 48, 48) < 0.1).long()
    results = []
    for network, frames in ((nchw, x), (nhwc, x.contiguous(memory_format=torch.channels_last))):
        loss = torch.nn.functional.cross_entropy(network(frames), target)
        loss.backward()
        results.append((loss.detach(), {name: p.grad for name, p in network.named_parameters()}))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    # float32 rounding through 60 layers: compared as one vector, since some gradients are
    # rounding noise themselves (a batch norm's bias feeding another batch norm: about 1e-7)
    flat_a = torch.cat([grad.flatten() for grad in grads_a.values()])
    flat_b = torch.cat([grads_b[name].flatten() for name in grads_a])
    assert float(flat_a.abs().max()) > 1e-3
    assert torch.linalg.vector_norm(flat_a - flat_b) <= 1e-3 * torch.linalg.vector_norm(flat_a)
    stem = next(m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.grad.is_contiguous(memory_format=torch.channels_last)


def test_training_step_reaches_the_stem():
    torch.manual_seed(0)
    network = build_network("mobilenet_v3_large").train()
    logits = network(torch.randn(2, 20, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.zeros(2, 32, 32, dtype=torch.long)).backward()
    stem = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0


def test_unknown_backbone_lists_valid_ones():
    expected = r"^backbone: unknown backbone 'vgg16'; choose one of resnet50, resnet101, mobilenet_v3_large$"
    with pytest.raises(BrainMetSegError, match=expected):
        build_network("vgg16")


@pytest.mark.parametrize(
    "parameter, kwargs", [("in_channels", {"in_channels": 0}), ("num_classes", {"num_classes": 1.5})]
)
def test_bad_sizes_refused(parameter, kwargs):
    with pytest.raises(BrainMetSegError, match=rf"^{parameter}: expected a positive integer"):
        build_network("mobilenet_v3_large", **kwargs)


def test_wrong_input_channels_refused(networks):
    with pytest.raises(BrainMetSegError, match=r"^network input: expected Nx20xHxW frames, got 1x4x32x32"):
        networks["mobilenet_v3_large"](torch.zeros(1, 4, 32, 32))


def test_batch_norm_statistics_follow_short_trainings_in_every_backbone():
    """Evaluation mode uses running statistics; with MobileNetV3's stock momentum (0.01) they
    lag a few-hundred-step CPU run so far that the network predicted nothing in eval mode."""
    import torch

    from BrainMetSegLib.network import BATCH_NORM_MOMENTUM, build_network

    network = build_network("mobilenet_v3_large", in_channels=20, num_classes=2)
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.momentum == BATCH_NORM_MOMENTUM == 0.1 for m in norms)

    network.train()
    frames = torch.randn(4, 20, 32, 32) * 3.0 + 5.0
    with torch.no_grad():
        for _ in range(30):
            network(frames)
    first = norms[0]
    batch_mean = network.deeplab.backbone["0"][0](frames).mean(dim=(0, 2, 3))
    torch.testing.assert_close(first.running_mean, batch_mean, atol=0.1, rtol=0.05)


def _feature_size(network: SegmentationNetwork, size: int) -> int:
    with torch.no_grad():
        return network.deeplab.backbone(torch.zeros(1, 20, size, size))["out"].shape[-1]


def test_output_stride_sets_the_resolution_of_the_logits_and_keeps_the_weights(networks):
    """MobileNetV3 at 16 (torchvision's), 8 and 4: the backbone's map is frame / stride, every
    parameter keeps its name and shape, so one set of weights runs at any stride."""
    assert networks["mobilenet_v3_large"].output_stride == 16
    assert networks["resnet50"].output_stride == 8 and _feature_size(networks["resnet50"], 64) == 8
    reference = networks["mobilenet_v3_large"].state_dict()
    for stride in (16, 8, 4):
        network = build_network("mobilenet_v3_large", output_stride=stride).eval()
        assert network.output_stride == stride and _feature_size(network, 64) == 64 // stride
        assert {k: v.shape for k, v in network.state_dict().items()} == {k: v.shape for k, v in reference.items()}
        network.load_state_dict(reference)
        with torch.no_grad():
            assert network(torch.randn(1, 20, 64, 48)).shape == (1, 2, 64, 48)


def test_dilation_keeps_the_receptive_field_of_each_convolution():
    """At stride 8 the convolutions after the replaced stride are dilated by 2 (4 in the last
    stage, which torchvision already dilates by 2), as DeepLabv3 dilates ResNets."""
    coarse = build_network("mobilenet_v3_large", output_stride=16)
    fine = build_network("mobilenet_v3_large", output_stride=8)
    pairs = [(a, b) for a, b in zip(coarse.modules(), fine.modules()) if isinstance(a, torch.nn.Conv2d)]
    changed = [(a, b) for a, b in pairs if (a.stride, a.dilation) != (b.stride, b.dilation)]
    assert changed and all(b.padding == tuple(b.dilation[0] * (k - 1) // 2 for k in b.kernel_size)
                           for _, b in changed)
    assert sum(a.stride == (2, 2) and b.stride == (1, 1) for a, b in changed) == 1
    assert {b.dilation[0] // a.dilation[0] for a, b in changed if a.stride == b.stride} == {2}


@pytest.mark.parametrize("backbone, stride", [("resnet50", 16), ("mobilenet_v3_large", 32),
                                              ("mobilenet_v3_large", True)])
def test_output_strides_a_backbone_cannot_take_are_refused(backbone, stride):
    message = rf"^output stride: {stride!r}; a {backbone} is built with output stride"
    with pytest.raises(BrainMetSegError, match=message):
        build_network(backbone, output_stride=stride)
