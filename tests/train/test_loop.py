"""The training loop end to end on a tiny Llama: every objective trains, accumulation and resume
are exact, the margin uses each pair's values, the reference cache is reused, outputs load."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from toy_records import make_run_config

from sppd.data.tokenize import TokenizeSettings
from sppd.settings import TrainConfig
from sppd.stages.train import main, read_records, resolve_paths
from sppd.train.loop import make_plan, split_step
from sppd.train.objectives import get_objective
from sppd.train.schedule import lr_at


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("objective", ["sft", "dpo", "step_dpo"])
@pytest.mark.slow
def test_each_objective_trains_and_saves_a_loadable_model(tmp_path, tiny_policy_dir, objective):
    from transformers import AutoModelForCausalLM

    cfg = make_run_config(tmp_path, objective, tiny_policy_dir, max_steps=3, optimizer="adamw")
    summary = main(cfg)
    out = tmp_path / "run" / f"train-{objective}"
    assert summary["steps"] == 3 and math.isfinite(summary["final_loss"])
    rows = metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in rows)
    if objective != "sft":
        assert {"rewards/chosen", "rewards/rejected", "rewards/accuracy", "rewards/margin"} <= rows[0].keys()
    assert max_diff(weights(out), weights(tiny_policy_dir)) > 1e-4  # parameters moved
    model = AutoModelForCausalLM.from_pretrained(out)  # the final folder is a plain HF model
    assert model.config.use_cache and sum(p.numel() for p in model.parameters()) > 0
    assert (out / "tokenizer.json").exists() and (out / "train_summary.json").exists()
    assert not (out / "checkpoints").exists()
    # A complete folder is skipped: the second call trains nothing and returns the same summary.
    assert main(cfg)["final_loss"] == summary["final_loss"]


def test_intermediate_steps_in_step_dpo_batches_carry_no_eos(tmp_path, tiny_policy_dir, toy_tokenizer):
    cfg = make_run_config(tmp_path, "step_dpo", tiny_policy_dir, n=12)
    spec = get_objective("step_dpo")
    records = read_records(resolve_paths(cfg, spec).data, spec)
    settings = TokenizeSettings(cfg.train.max_length, cfg.train.overlong, "\n", cfg.prompt)
    examples, _ = spec.tokenize(records, toy_tokenizer, settings)
    batch = spec.collate(examples, toy_tokenizer.pad_token_id, True).packed
    eos = toy_tokenizer.eos_token_id
    terminal = [r.chosen_terminal for r in records]
    assert 0 < sum(terminal) < len(terminal)  # both kinds present
    for b, is_terminal in enumerate(terminal):
        for mask in (batch.chosen_mask[b], batch.rejected_mask[b]):
            step_ids = batch.input_ids[b][mask].tolist()
            assert (eos in step_ids) == is_terminal
            assert step_ids[-1] == (eos if is_terminal else toy_tokenizer.convert_tokens_to_ids("\n"))


@pytest.mark.parametrize("objective,optimizer", [("step_dpo", "sgd"), ("sft", "adamw")])
@pytest.mark.slow
def test_gradient_accumulation_invariance(tmp_path, tiny_policy_dir, objective, optimizer):
    """batch 4 x accum 1 and batch 2 x accum 2 take the same steps (8 examples, 2 steps)."""
    common = dict(max_steps=2, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3, max_grad_norm=0.0)
    main(make_run_config(tmp_path, objective, tiny_policy_dir, name="a", batch_size=4, grad_accum=1, **common))
    main(make_run_config(tmp_path, objective, tiny_policy_dir, name="b", batch_size=2, grad_accum=2, **common))
    out_a, out_b = tmp_path / "a" / f"train-{objective}", tmp_path / "b" / f"train-{objective}"
    assert max_diff(weights(out_a), weights(tiny_policy_dir)) > 1e-3
    assert max_diff(weights(out_a), weights(out_b)) < 1e-5
    for ra, rb in zip(metrics(out_a), metrics(out_b)):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_result(tmp_path, tiny_policy_dir):
    """4 steps straight vs 2 steps, a 'kill', then a resumed run: same parameters and metrics."""
    common = dict(max_steps=4, optimizer="adamw", warmup_ratio=0.25, save_every=2, batch_size=2)
    uninterrupted = main(make_run_config(tmp_path, "step_dpo", tiny_policy_dir, name="straight", **common))
    cfg = make_run_config(tmp_path, "step_dpo", tiny_policy_dir, name="killed", **common)
    partial = main(cfg, stop_after=2)
    out = tmp_path / "killed" / "train-step_dpo"
    assert not partial["complete"] and (out / "checkpoints" / "step-00000002").is_dir()
    assert not (out / "model.safetensors").exists()
    resumed = main(cfg)
    assert resumed["resumed_from"].endswith("step-00000002") and resumed["steps"] == 4
    # tokens count the steps before the resume too (the continued-pretraining control is sized from it)
    assert resumed["tokens"] == uninterrupted["tokens"] > resumed["tokens_this_run"] > 0
    straight = tmp_path / "straight" / "train-step_dpo"
    assert max_diff(weights(out), weights(straight)) < 1e-6
    assert [r["loss"] for r in metrics(out)] == pytest.approx([r["loss"] for r in metrics(straight)], abs=1e-6)
    # The schedule resumed too: 1 warmup step, then cosine over 3.
    assert [r["lr"] for r in metrics(out)] == pytest.approx([lr_at(s, 1e-3, 4, 0.25) for s in range(4)])
    assert [r["lr"] for r in metrics(out)][:2] == pytest.approx([1e-3, 1e-3])


@pytest.mark.slow
def test_first_step_loss_is_the_hand_derived_margin_loss(tmp_path, tiny_policy_dir):
    """At step 1 the policy equals the reference (h = 0), so loss_i = -log σ(-m_i) = softplus(m_i)
    with m_i = γ(V(s_w) - V(s_l)) per pair (Eq. 5): the loop must use each pair's own values."""
    n, gamma = 8, 2.0
    spec = get_objective("step_dpo")
    losses = {}
    for margin in ("dynamic", "fixed", "none"):
        cfg = make_run_config(
            tmp_path,
            "step_dpo",
            tiny_policy_dir,
            n=n,
            name=margin,
            batch_size=n,
            max_steps=1,
            margin=margin,
            gamma=gamma,
            fixed_margin=0.3,
        )
        losses[margin] = main(cfg)["final_loss"]
    records = read_records(resolve_paths(cfg, spec).data, spec)
    gaps = torch.tensor([r.chosen_value - r.rejected_value for r in records])
    assert gaps.std() > 0.05  # the pairs really have different values
    assert losses["dynamic"] == pytest.approx(float(torch.nn.functional.softplus(gamma * gaps).mean()), abs=1e-5)
    assert losses["fixed"] == pytest.approx(math.log1p(math.exp(0.3)), abs=1e-5)
    assert losses["none"] == pytest.approx(math.log(2.0), abs=1e-5)


@pytest.mark.parametrize("objective", ["dpo", "step_dpo"])
@pytest.mark.slow
def test_chosen_nll_term_adds_weight_times_per_token_nll(tmp_path, tiny_policy_dir, objective):
    """loss = preference loss + w * (-log pi(y_w) / |y_w|), averaged over pairs; at step 1 the
    preference part is the same as without the term, and the logged NLL matches the pairs'
    summed chosen log-probs divided by their token counts (recomputed here from the metrics)."""
    runs = {}
    for w in (0.0, 0.5):
        cfg = make_run_config(
            tmp_path,
            objective,
            tiny_policy_dir,
            name=f"{objective}-{w}",
            batch_size=8,
            max_steps=1,
            chosen_nll_weight=w,
        )
        main(cfg)
        runs[w] = metrics(tmp_path / f"{objective}-{w}" / f"train-{objective}")[0]
    assert "chosen_nll" not in runs[0.0] and runs[0.5]["chosen_nll"] > 0
    assert runs[0.5]["loss"] == pytest.approx(runs[0.0]["loss"] + 0.5 * runs[0.5]["chosen_nll"], abs=1e-5)
    assert runs[0.5]["logps/chosen"] == pytest.approx(runs[0.0]["logps/chosen"], abs=1e-5)
    assert runs[0.5]["chosen_nll"] < -runs[0.5]["logps/chosen"]  # per token < summed over >= 1 token


def test_reference_cache_is_reused_and_keyed_by_tokenization(tmp_path, tiny_policy_dir, monkeypatch):
    import sppd.stages.train as stage

    cfg = make_run_config(tmp_path, "dpo", tiny_policy_dir, max_steps=1)
    main(cfg)
    out = tmp_path / "run" / "train-dpo"
    (cache,) = out.glob("ref_logps-*.pt")
    # Rerun with the same inputs: the cache is found and the reference model is never loaded.
    (out / "manifest.json").unlink()
    loads = []
    real = stage.load_model
    monkeypatch.setattr(stage, "load_model", lambda path, c: loads.append(path) or real(path, c))
    main(cfg)
    assert [str(p) for p in loads] == [cfg.train.init]  # the policy only, no reference model
    # Another tokenization setting gives another key, hence a recomputation.
    cfg.train.max_length = 500
    (out / "manifest.json").unlink()
    main(cfg)
    assert len(list(out.glob("ref_logps-*.pt"))) == 2 and len(loads) == 3


def test_schedule_and_step_plan_by_hand():
    # 10 steps, warmup 0.2 -> 2 warmup steps: 0.5, 1.0, then cosine over 8 steps from 1.0.
    lrs = [lr_at(s, 1.0, 10, 0.2, 0.1) for s in range(10)]
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))  # 0.55
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    plan = make_plan(11, TrainConfig(batch_size=2, grad_accum=2, epochs=2), processes=1)
    # 11 = 2 full global batches of 4 + a tail of 3 >= 2 micro-batches: kept as a third step.
    assert (plan.steps_per_epoch, plan.total_steps, plan.tail_skipped) == (3, 6, 0)
    epoch0 = [i for s in range(3) for i in plan.step_indices(s)]
    assert sorted(epoch0) == list(range(11)) and plan.step_indices(3) != plan.step_indices(0)
    assert split_step([5, 6, 7], rank=0, processes=1, grad_accum=2) == [[5, 6], [7]]
    assert split_step(list(range(8)), rank=1, processes=2, grad_accum=2) == [[4, 5], [6, 7]]
    tail = make_plan(9, TrainConfig(batch_size=2, grad_accum=2), processes=1)
    assert (tail.steps_per_epoch, tail.tail_skipped) == (2, 1)  # a tail of 1 cannot fill 2 micro-batches
