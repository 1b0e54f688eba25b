"""What every training run logs besides the loss: the gradient norm before clipping, the L2
distance moved from the start model, and (preference objectives) the log-prob change against
the reference; plus the DeepSpeed keys the train stage sets."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from toy_records import make_run_config

from sppd.report_diagnostics import DRIFT_KEYS
from sppd.settings import TrainConfig
from sppd.stages.train import main
from sppd.train.drift import l2_distance, saved_l2_distance


def _metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_two_steps_log_grad_norm_and_the_distance_from_the_init_model(tmp_path, tiny_policy_dir):
    # lr large and clipping at 0.01: a norm logged after clipping would read <= 0.01
    cfg = make_run_config(
        tmp_path, "dpo", tiny_policy_dir, max_steps=2, optimizer="sgd", lr=0.5, max_grad_norm=0.01, l2_every=1
    )
    summary = main(cfg)
    out = tmp_path / "run" / "train-dpo"
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2] and all(math.isfinite(r["loss"]) for r in rows)
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0.01 for r in rows)  # before clipping
    assert 0 < rows[0]["l2_from_start"] < rows[1]["l2_from_start"]
    # by hand: the saved model against the init folder, tensor by tensor (the tiny model is fp32)
    saved, init = load_file(str(out / "model.safetensors")), load_file(str(tiny_policy_dir / "model.safetensors"))
    by_hand = math.sqrt(sum(float((saved[k].double() - init[k].double()).pow(2).sum()) for k in init))
    assert by_hand > 0
    assert summary["l2_from_start"] == pytest.approx(by_hand, rel=1e-5)
    assert rows[-1]["l2_from_start"] == summary["l2_from_start"]
    assert summary["final_grad_norm"] == rows[-1]["grad_norm"]
    written = json.loads((out / "train_summary.json").read_text())
    assert written["l2_from_start"] == summary["l2_from_start"]
    # log-prob change against the reference = reward / beta (the reference is the init model)
    for side in ("chosen", "rejected"):
        assert rows[0][f"logps/{side}_change"] == pytest.approx(rows[0][f"rewards/{side}"] / 0.1, abs=1e-4)
    assert rows[0]["logps/chosen_change"] == pytest.approx(0.0, abs=1e-4)  # step 1 starts at the reference
    assert rows[1]["logps/chosen_change"] != pytest.approx(0.0, abs=1e-4)
    assert not any(k.startswith("ref_logps/") for k in rows[0])
    # the report's drift columns: example-weighted means over the logged steps, in the summary file
    weights = [r["examples"] for r in rows]
    for key, source in zip(DRIFT_KEYS, ("logps/chosen_change", "logps/rejected_change", "rewards/accuracy")):
        assert written[key] == pytest.approx(sum(r[source] * w for r, w in zip(rows, weights)) / sum(weights))


def test_l2_is_logged_on_the_last_step_and_every_l2_every_steps(tmp_path, tiny_policy_dir):
    cfg = make_run_config(tmp_path, "sft", tiny_policy_dir, n=12, max_steps=3, batch_size=2, l2_every=2)
    main(cfg)
    rows = _metrics(tmp_path / "run" / "train-sft")
    assert ["l2_from_start" in r for r in rows] == [False, True, True]
    assert "logps/chosen_change" not in rows[0]  # SFT has no reference
    written = json.loads((tmp_path / "run" / "train-sft" / "train_summary.json").read_text())
    assert not any(k in written for k in DRIFT_KEYS)


def test_l2_distance_skips_names_the_start_folder_lacks_and_empty_shards(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2), "b": torch.ones(3)}, str(tmp_path / "model.safetensors"))
    moved = [("a", torch.tensor([3.0, 4.0])), ("b", torch.ones(3)), ("tied", torch.ones(5)), ("b2", torch.empty(0))]
    assert l2_distance(moved, tmp_path) == pytest.approx(5.0)
    assert l2_distance([("nothing", torch.ones(1))], tmp_path) is None
    assert l2_distance(moved, tmp_path / "missing") is None
    (tmp_path / "out").mkdir()
    save_file({"a": torch.tensor([0.0, 1.0]), "b": torch.ones(3)}, str(tmp_path / "out" / "model.safetensors"))
    assert saved_l2_distance(tmp_path / "out", tmp_path) == pytest.approx(1.0)


def test_deepspeed_settings_allow_sgd_and_say_no_clipping_explicitly():
    from sppd.train.loop import deepspeed_settings

    keys = deepspeed_settings(TrainConfig(optimizer="sgd", batch_size=3, max_grad_norm=0.0))
    assert keys == {
        "train_micro_batch_size_per_gpu": 3,
        "gradient_clipping": 0.0,
        "zero_allow_untested_optimizer": True,
    }
    assert deepspeed_settings(TrainConfig(max_grad_norm=1.5))["gradient_clipping"] == 1.5
