"""Suite-wide settings: tests never touch the user's models directory or open windows."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def isolated_models_directory(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Point $BRAINMETSEG_MODELS at an empty folder so no test reads or writes ~/.brainmetseg."""
    models = tmp_path_factory.mktemp("models")
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(models))
    return models


@pytest.fixture()
def one_torch_thread():
    """Tiny networks on a shared 2-core machine run many times faster on one torch thread (no
    spin-waiting for a busy core); results do not depend on it. Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
