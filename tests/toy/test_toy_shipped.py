"""Shipped toy base models: ``--ship`` writes one, an empty cache takes it without training,
``--verify`` retrains and compares tensor by tensor (toy-tiny, shortened: seconds)."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from conftest import assert_one_error
from sppd.settings import load_run_config
from sppd.toy import pretrain
from sppd.toy.pretrain import COMPLETE_MARKER, cached_base_model, config_hash
from sppd.toy.reproduce import compare_weights
from sppd.toy.shipped import SHIPPED_ENV, shipped_checkpoint

# toy-tiny, shorter still: the same code path in about a second of training
TINY = ("-c", "toy-tiny", "toy.steps=6", "toy.n_train_problems=200", "toy.n_eval=4", "toy.eval_batch_size=4")


def toy_cfg(*overrides: str):
    return load_run_config("toy-tiny", [*TINY[2:], *overrides]).toy


@pytest.fixture(scope="module")
def shipped_root(tmp_path_factory):
    """A shipped root holding the toy-tiny base model, made by ``sppd toy pretrain --ship``."""
    from sppd.cli import main

    root, cache = tmp_path_factory.mktemp("shipped"), tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(SHIPPED_ENV, str(root))
        mp.setenv("SPPD_CACHE", str(cache))
        assert main(["toy", "pretrain", *TINY, "--ship"]) == 0
    return root


@pytest.fixture
def shipped(shipped_root, tmp_path, monkeypatch):
    """A private copy of the shipped root (tests may perturb it) and an empty cache, both in the env."""
    root = tmp_path / "shipped"
    shutil.copytree(shipped_root, root)
    monkeypatch.setenv(SHIPPED_ENV, str(root))
    monkeypatch.setenv("SPPD_CACHE", str(tmp_path / "cache"))
    return root / f"toy-base-{config_hash(toy_cfg())}"


def _no_training(*args, **kwargs):
    raise AssertionError("pretraining ran although a shipped checkpoint exists")


@pytest.mark.slow
def test_ship_writes_the_model_folder_without_png_or_marker(shipped):
    names = sorted(p.name for p in shipped.iterdir())
    assert {"model.safetensors", "config.json", "generation_config.json", "pretrain.json", "curve.jsonl"} <= set(names)
    assert any(n.startswith("tokenizer") for n in names)
    assert "curve.png" not in names and COMPLETE_MARKER not in names
    assert json.loads((shipped / "pretrain.json").read_text())["config_hash"] == config_hash(toy_cfg())


@pytest.mark.slow
def test_empty_cache_takes_the_shipped_checkpoint_without_training(shipped, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pretrain, "run_pretrain", _no_training)
    folder = cached_base_model(toy_cfg(), tmp_path / "cache", progress=False)
    assert folder == tmp_path / "cache" / shipped.name and (folder / COMPLETE_MARKER).exists()
    assert (folder / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    log = capsys.readouterr().err.strip().splitlines()
    assert len(log) == 1 and "shipped" in log[0] and "--verify" in log[0]
    assert cached_base_model(toy_cfg(), tmp_path / "cache", progress=False) == folder  # the cache comes first now
    assert capsys.readouterr().err == ""
    AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.slow
def test_config_without_shipped_checkpoint_still_pretrains(shipped, tmp_path, monkeypatch, cli):
    calls = []
    real = pretrain.run_pretrain
    monkeypatch.setattr(pretrain, "run_pretrain", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, out, err = cli("toy", "pretrain", *TINY, "toy.steps=3")
    assert code == 0 and calls == [1] and "shipped" not in err
    assert f"toy-base-{config_hash(toy_cfg('toy.steps=3'))}" in out


@pytest.mark.slow
def test_verify_passes_on_an_honest_copy(shipped, cli):
    code, out, err = cli("toy", "pretrain", *TINY, "--verify")
    assert code == 0, err
    assert "model.norm.weight" in out and "final greedy acc" in out and "reproduced" in out
    assert not (shipped.parent.parent / "cache").exists()  # verify reads and writes no cache


@pytest.mark.slow
def test_verify_fails_naming_a_perturbed_tensor(shipped, cli):
    weights = load_file(shipped / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][0, 0] += 1e-3
    save_file(weights, shipped / "model.safetensors", metadata={"format": "pt"})
    code, out, err = cli("toy", "pretrain", *TINY, "--verify")
    assert code == 1
    assert_one_error(code, err, "model.layers.1.mlp.up_proj.weight", "not reproduced")
    assert "NO" in out
    # a tolerance above the perturbation accepts it
    assert cli("toy", "pretrain", *TINY, "--verify", "--tolerance", "1e-2")[0] == 0


@pytest.mark.slow
def test_ship_replaces_the_shipped_copy_from_a_fresh_training(shipped, monkeypatch, cli):
    """With an empty cache ``--ship`` trains (it does not copy the shipped model onto itself)."""
    (shipped / "model.safetensors").write_bytes(b"stale")
    calls = []
    real = pretrain.run_pretrain
    monkeypatch.setattr(pretrain, "run_pretrain", lambda *a, **k: calls.append(1) or real(*a, **k))
    code, _, err = cli("toy", "pretrain", *TINY, "--ship")
    assert code == 0, err
    assert calls == [1] and shipped_checkpoint(shipped.name) == shipped
    load_file(shipped / "model.safetensors")


def test_verify_without_shipped_checkpoint_is_one_error_line(tmp_path, monkeypatch, cli):
    monkeypatch.setenv(SHIPPED_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(pretrain, "run_pretrain", _no_training)
    code, _, err = cli("toy", "pretrain", *TINY, "--verify")
    assert code == 2
    assert_one_error(code, err, f"toy-base-{config_hash(toy_cfg())}", "--ship")


def test_shipped_checkpoint_needs_whole_folder_of_its_own_hash(tmp_path):
    folder = tmp_path / "toy-base-abc"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        (folder / name).write_text("x")
    assert shipped_checkpoint("toy-base-abc", tmp_path) is None  # no pretrain.json
    (folder / "pretrain.json").write_text(json.dumps({"config_hash": "def"}))
    assert shipped_checkpoint("toy-base-abc", tmp_path) is None  # renamed from another config
    (folder / "pretrain.json").write_text(json.dumps({"config_hash": "abc"}))
    assert shipped_checkpoint("toy-base-abc", tmp_path) == folder


def test_compare_weights_counts_missing_or_reshaped_tensors_as_infinite(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    save_file({"w": torch.zeros(2, 2), "v": torch.zeros(3), "only_a": torch.zeros(1)}, a / "model.safetensors")
    save_file({"w": torch.full((2, 2), 0.5), "v": torch.zeros(4)}, b / "model.safetensors")
    assert compare_weights(a, b) == {"only_a": float("inf"), "v": float("inf"), "w": 0.5}
