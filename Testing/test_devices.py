"""Device choice, naming and mixed precision."""
from __future__ import annotations

import pytest
import torch

from BrainMetSegLib.devices import autocast, device_description, resolve_device
from BrainMetSegLib.errors import BrainMetSegError


def test_auto_picks_cuda_only_when_available_and_names_are_case_insensitive():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_unusable_or_unknown_devices_are_refused_with_the_reason():
    with pytest.raises(BrainMetSegError, match=r"device 'cuda:99': (no such GPU|.*CUDA)"):
        resolve_device("cuda:99")
    with pytest.raises(BrainMetSegError, match=r"device 'tpu': unknown; expected one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(BrainMetSegError, match=r"device 'cuda:x'"):
        resolve_device("cuda:x")
    if not torch.cuda.is_available():
        with pytest.raises(BrainMetSegError, match=r"device 'cuda': .*use --device cpu or auto"):
            resolve_device("cuda")


def test_cpu_description_and_autocast_keeps_float32():
    assert device_description(torch.device("cpu")).startswith("cpu (")
    a = torch.randn(8, 8)
    with autocast(torch.device("cpu")):
        product = a @ a
    assert product.dtype == torch.float32
    torch.testing.assert_close(product, a @ a)
