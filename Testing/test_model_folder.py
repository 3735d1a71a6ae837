"""Model folders: save/load round trip, refusals (overwrite, pickle, mismatch), lookup by name."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from BrainMetSegLib.errors import BrainMetSegError
from BrainMetSegLib.model_card import ModelConfig
from BrainMetSegLib.model_folder import (
    list_models,
    load_model_folder,
    models_directory,
    read_model_config,
    resolve_model,
    save_model_folder,
)
from BrainMetSegLib.network import build_network

LIBRARY_ROOT = Path(__file__).resolve().parents[1] / "BrainMetSeg"


@pytest.fixture(scope="module")
def trained():
    """A MobileNetV3 network with non-default BatchNorm statistics, as after training."""
    torch.manual_seed(3)
    network = build_network("mobilenet_v3_large").train()
    with torch.no_grad():
        network(torch.randn(2, 20, 32, 32))  # moves running means/vars away from 0/1
    return network.eval()


def config(name: str = "m", **changes) -> ModelConfig:
    return ModelConfig(name=name, backbone="mobilenet_v3_large", **changes)


def test_round_trip_gives_identical_outputs(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config(operating_point=0.3))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]  # no temporaries left
    assert json.loads((folder / "model.json").read_text())["operating_point"] == 0.3

    network, loaded_config = load_model_folder(folder)
    assert loaded_config == read_model_config(folder)
    assert loaded_config.operating_point == 0.3 and loaded_config.backbone == "mobilenet_v3_large"
    assert not network.training
    x = torch.randn(1, 20, 48, 48)
    with torch.no_grad():
        assert torch.equal(network(x), trained(x))
    for key, value in trained.state_dict().items():
        assert torch.equal(network.state_dict()[key], value), key


def test_output_stride_is_restored_with_the_weights(tmp_path, trained):
    fine = build_network("mobilenet_v3_large", output_stride=8).eval()
    fine.load_state_dict(trained.state_dict())
    folder = save_model_folder(tmp_path / "m", fine.state_dict(), config(output_stride=8))
    network, loaded = load_model_folder(folder)
    assert loaded.output_stride == 8 and network.output_stride == 8
    x = torch.randn(1, 20, 48, 48)
    with torch.no_grad():
        assert torch.equal(network(x), fine(x))
        assert not torch.allclose(network(x), trained(x))  # the stride changes what is computed


def test_non_contiguous_tensors_are_saved(tmp_path, trained):
    state = dict(trained.state_dict())
    key = "deeplab.classifier.4.weight"  # 2x256x1x1: a transposed copy is non-contiguous
    state[key] = state[key].clone().transpose(0, 1).contiguous().transpose(0, 1)
    assert not state[key].is_contiguous()
    folder = save_model_folder(tmp_path / "m", state, config())
    network, _ = load_model_folder(folder)
    assert torch.equal(network.state_dict()[key], trained.state_dict()[key])


def test_existing_model_folder_not_overwritten(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config(operating_point=0.2))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(folder))}: a model folder already exists there; pass overwrite=True"):
        save_model_folder(folder, trained.state_dict(), config(operating_point=0.7))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    save_model_folder(folder, trained.state_dict(), config(operating_point=0.7), overwrite=True)
    assert read_model_config(folder).operating_point == 0.7


def test_invalid_config_not_written(tmp_path, trained):
    folder = tmp_path / "m"
    expected = r"model\.json: field 'operating_point': expected a confidence in \[0, 1\]"
    with pytest.raises(BrainMetSegError, match=expected):
        save_model_folder(folder, trained.state_dict(), config(operating_point=2.0))
    assert not folder.exists()


def test_pickle_refused(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    weights = folder / "model.safetensors"
    torch.save(trained.state_dict(), tmp_path / "checkpoint.pt")
    os.replace(tmp_path / "checkpoint.pt", weights)
    with pytest.raises(BrainMetSegError) as raised:
        load_model_folder(folder)
    message = str(raised.value)
    assert message.startswith(f"{weights}: not a safetensors file; it looks like a pickled PyTorch checkpoint")
    assert "never loads" in message


def test_garbage_weights_refused(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(folder / 'model.safetensors'))}: not a safetensors file; "):
        load_model_folder(folder)


def test_backbone_mismatch_refused(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    document = json.loads((folder / "model.json").read_text())
    document["backbone"] = "resnet50"
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(BrainMetSegError) as raised:
        load_model_folder(folder)
    message = str(raised.value)
    assert message.startswith(
        f"{folder / 'model.safetensors'}: weights do not match {folder / 'model.json'} "
        "(backbone resnet50, 20 input channels): "
    )
    resnet_keys = sorted(set(build_network("resnet50").state_dict()) - set(trained.state_dict()))
    assert f"tensor(s) missing: {', '.join(resnet_keys[:3])}, ... (" in message
    assert "unexpected tensor(s): deeplab.backbone.0.0.weight" in message


def test_input_channel_mismatch_names_the_tensor_and_shapes(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    document = json.loads((folder / "model.json").read_text())
    document["slices_per_frame"] = 3
    (folder / "model.json").write_text(json.dumps(document))
    with pytest.raises(BrainMetSegError) as raised:
        load_model_folder(folder)
    message = str(raised.value)
    assert "(backbone mobilenet_v3_large, 12 input channels)" in message
    assert "1 tensor(s) of the wrong shape: deeplab.backbone.0.0.weight (file 16x20x3x3, expected 16x12x3x3)" in message
    assert "missing" not in message and "unexpected" not in message


def test_missing_files_refused(tmp_path, trained):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(empty / 'model.json'))}: missing; a model folder holds"):
        load_model_folder(empty)
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    (folder / "model.safetensors").unlink()
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(folder / 'model.safetensors'))}: missing"):
        load_model_folder(folder)
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(tmp_path / 'nowhere'))}: not a model folder"):
        load_model_folder(tmp_path / "nowhere")


def test_bad_json_refused(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text("{\"format\": 1,")
    with pytest.raises(BrainMetSegError, match=rf"^{re.escape(str(folder / 'model.json'))}: not valid JSON"):
        read_model_config(folder)


def test_bad_device_refused(tmp_path, trained):
    folder = save_model_folder(tmp_path / "m", trained.state_dict(), config())
    with pytest.raises(BrainMetSegError, match=r"^device 'gpu0': "):
        load_model_folder(folder, device="gpu0")


def test_models_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(tmp_path / "mine"))
    assert models_directory() == tmp_path / "mine"
    monkeypatch.delenv("BRAINMETSEG_MODELS")
    assert models_directory() == Path.home() / ".brainmetseg" / "models"


def test_resolve_by_name_or_path(monkeypatch, tmp_path, trained):
    directory = tmp_path / "models"
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(directory))
    save_model_folder(directory / "alpha", trained.state_dict(), config("alpha"))
    elsewhere = save_model_folder(tmp_path / "elsewhere" / "beta", trained.state_dict(), config("beta"))
    assert resolve_model("alpha") == directory / "alpha"
    assert resolve_model(str(elsewhere)) == elsewhere
    assert resolve_model(elsewhere) == elsewhere
    expected = rf"^model 'gamma': no such folder, and no model of that name in {re.escape(str(directory))} \(available: alpha\)$"
    with pytest.raises(BrainMetSegError, match=expected):
        resolve_model("gamma")
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(tmp_path / "none"))
    with pytest.raises(BrainMetSegError, match=r"\(it holds no models\)$"):
        resolve_model("alpha")


def test_list_models_sorted_skipping_broken(tmp_path, trained, caplog):
    for name in ("zeta", "alpha"):
        save_model_folder(tmp_path / name, trained.state_dict(), config(name, synthetic_training_data=True))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.json").write_text("not json")
    (tmp_path / "no-weights").mkdir()
    (tmp_path / "no-weights" / "model.json").write_text(json.dumps(config("no-weights").to_json()))
    (tmp_path / "a-file.txt").write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="BrainMetSegLib.model_folder"):
        models = list_models(tmp_path)
    assert [(folder.name, cfg.name) for folder, cfg in models] == [("alpha", "alpha"), ("zeta", "zeta")]
    assert all(cfg.synthetic_training_data for _, cfg in models)
    assert "broken" in caplog.text and "not valid JSON" in caplog.text
    assert "no-weights" in caplog.text
    assert list_models(tmp_path / "absent") == []


def test_list_models_defaults_to_models_directory(monkeypatch, tmp_path, trained):
    monkeypatch.setenv("BRAINMETSEG_MODELS", str(tmp_path))
    save_model_folder(tmp_path / "only", trained.state_dict(), config("only"))
    assert [folder for folder, _ in list_models()] == [tmp_path / "only"]


def test_listing_works_without_torch(tmp_path, trained):
    """Slicer lists models before torch is installed: listing must not import it."""
    save_model_folder(tmp_path / "m", trained.state_dict(), config("m"))
    script = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "from BrainMetSegLib.model_folder import list_models, read_model_config, resolve_model\n"
        "from BrainMetSegLib.model_card import card_text\n"
        f"models = list_models({str(tmp_path)!r})\n"
        "print([folder.name for folder, _ in models], resolve_model('m').name)\n"
        "print(card_text(models[0][1]).splitlines()[0])\n"
    )
    env = dict(os.environ, BRAINMETSEG_MODELS=str(tmp_path), PYTHONPATH=str(LIBRARY_ROOT))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['m'] m", "Model: m"]
