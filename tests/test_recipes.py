"""The shipped recipes: one source of per-objective training settings for ``sppd train`` and
``sppd pipeline``, clipping chosen explicitly per objective, and batch sizes whose memory
arithmetic (written next to them) fits one 80 GB GPU."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sppd import config
from sppd.settings import load_run_config

REAL = ["qwen2.5-7b-base", "qwen2.5-7b-instruct", "llama3.1-8b-instruct"]
FOLDERS = ["model.path=/models/m", "score.prm_path=/models/prm"]
OBJECTIVES = ["sft", "dpo", "step_dpo"]
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_sppd_train_uses_the_recipe_settings_of_its_objective(objective):
    cfg = load_run_config("qwen2.5-7b-base", [*FOLDERS, f"train.objective={objective}"])
    recipe = getattr(cfg.pipeline, objective)
    assert cfg.train == recipe  # optimizer, lr, max_length, clipping, batch: one place
    expected = ("adamw", 5e-6) if objective == "sft" else ("sgd", 1e-5)
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.max_length) == (*expected, 2560)


def test_explicit_train_keys_override_the_recipe_and_a_saved_config_resolves_to_itself(tmp_path):
    cfg = load_run_config("qwen2.5-7b-base", [*FOLDERS, "train.objective=dpo", "train.lr=3e-5", "train.data=/d"])
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.data, cfg.train.max_length) == ("sgd", 3e-5, "/d", 2560)
    saved = tmp_path / "config.yaml"
    saved.write_text(config.dump_yaml(cfg))
    assert load_run_config(str(saved)) == cfg
    # a user file that sets train: keys in YAML is read the same way
    user = tmp_path / "user.yaml"
    user.write_text("inherit: qwen2.5-7b-base\ntrain: {objective: step_dpo, batch_size: 2}\n")
    cfg = load_run_config(str(user), FOLDERS)
    assert (cfg.train.optimizer, cfg.train.gamma, cfg.train.batch_size) == ("sgd", 1.0, 2)


def test_show_config_prints_the_resolved_train_section(capsys):
    from sppd.cli import main

    assert main(["show-config", "-c", "qwen2.5-7b-base", *FOLDERS, "train.objective=step_dpo"]) == 0
    train = config.yaml.safe_load(capsys.readouterr().out)["train"]
    assert (train["optimizer"], train["lr"], train["max_length"], train["max_grad_norm"]) == ("sgd", 1e-5, 2560, 0.0)


def test_the_readme_training_command_resolves_to_the_recipe():
    text = README.read_text()
    block = text[text.index("# training alone") :]
    launch = block[block.index("accelerate launch") :].replace("\\\n", " ")
    args = shlex.split(launch.split("\n", 1)[0])
    i = args.index("train")
    assert args[i + 1 : i + 3] == ["-c", "qwen2.5-7b-base"]
    cfg = load_run_config("qwen2.5-7b-base", args[i + 3 :])
    assert cfg.train.objective == "step_dpo" and cfg.train.optimizer == "sgd" and cfg.train.lr == 1e-5
    assert cfg.train.max_length == 2560 and cfg.train.max_grad_norm == 0.0


def _chain_sections(name: str) -> list[dict]:
    """The ``pipeline`` mappings of a recipe and every file it inherits from."""
    sections, current = [], name
    while current:
        data = config.yaml.safe_load(config.resolve_config_path(current).read_text())
        sections.append(data.get("pipeline") or {})
        current = data.get("inherit")
    return sections


@pytest.mark.parametrize("name", config.shipped_config_names())
def test_every_recipe_sets_clipping_per_objective_on_purpose(name):
    for objective in OBJECTIVES:
        assert any("max_grad_norm" in (s.get(objective) or {}) for s in _chain_sections(name)), (name, objective)
    cfg = load_run_config(name, [] if name.startswith("toy") else FOLDERS)
    if name.startswith("toy"):  # the toy's effective values (and numbers) are unchanged
        assert [getattr(cfg.pipeline, o).max_grad_norm for o in OBJECTIVES] == [1.0, 1.0, 0.0]
    else:  # SGD is not clipped (see the recipe's comment)
        assert cfg.pipeline.dpo.max_grad_norm == cfg.pipeline.step_dpo.max_grad_norm == 0.0
        assert cfg.pipeline.sft.max_grad_norm == 1.0


# layers, KV heads, head dim, parameters, hidden, MLP width: the published configs of the recipes' models
ARCH = {"qwen": (28, 4, 128, 7.62e9, 3584, 18944), "llama": (32, 8, 128, 8.03e9, 4096, 14336)}
LONGEST = 400 + 2048  # prompt (template, system prompt, question) + generation limit, in tokens
GPU = 80e9


@pytest.mark.parametrize("name", REAL)
def test_real_recipe_batch_sizes_fit_one_80gb_gpu(name):
    layers, kv_heads, head_dim, params, _, mlp = ARCH["llama" if "llama" in name else "qwen"]
    cfg = load_run_config(name, FOLDERS)
    kv_per_seq = 2 * layers * kv_heads * head_dim * 2 * LONGEST  # bf16 K and V
    weights = 2 * params
    prefill_tokens = cfg.sample.engine_batch_size // cfg.sample.C * LONGEST
    sampling = weights + cfg.sample.engine_batch_size * kv_per_seq + 3 * prefill_tokens * mlp * 2
    evaluation = weights + cfg.eval.batch_size * kv_per_seq
    assert sampling < 0.75 * GPU and evaluation < 0.75 * GPU  # a margin for the allocator and CUDA context
