"""Toy model and pretraining: a few steps of a tiny model write a loadable HF folder."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sppd.toy.config import ToyModelConfig, ToyPretrainConfig, ToyWorldConfig
from sppd.toy.model import build_toy_model
from sppd.toy.pretrain import (
    COMPLETE_MARKER,
    build_corpus,
    cached_base_model,
    collate,
    config_hash,
    greedy_accuracy,
    run_pretrain,
)
from sppd.toy.tokenizer import build_toy_tokenizer
from sppd.toy.world import format_solution, generate_problems, solve
from sppd.train.schedule import cosine_lr

TINY_MODEL = ToyModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, seed=0)


def tiny_cfg(**kw) -> ToyPretrainConfig:
    base = dict(
        world=ToyWorldConfig(max_ops=2),
        model=TINY_MODEL,
        n_train_problems=64,
        steps=4,
        batch_size=8,
        lr=3e-3,
        warmup_steps=1,
        eval_every=2,
        n_eval=4,
        eval_batch_size=4,
    )
    base.update(kw)
    return ToyPretrainConfig(**base)


def test_model_is_seeded_and_has_special_ids():
    tok = build_toy_tokenizer()
    a, b = build_toy_model(TINY_MODEL, tok), build_toy_model(TINY_MODEL, tok)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert (a.config.bos_token_id, a.config.eos_token_id, a.config.pad_token_id) == (1, 2, 0)
    assert a.generation_config.eos_token_id == 2 and a.generation_config.pad_token_id == 0
    full = build_toy_model(ToyModelConfig(), tok)
    assert 0.7e6 < sum(p.numel() for p in full.parameters()) < 1.3e6


def test_collate_masks_prompt_and_padding():
    batch = collate([[1, 5, 6, 7, 2], [1, 5, 9]], [2, 2], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 5, 6, 7, 2], [1, 5, 9, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, 6, 7, 2], [-100, -100, 9, -100, -100]]


def test_corpus_examples_end_with_eos_after_prompt():
    tok = build_toy_tokenizer()
    examples, prompt_lens, clean = build_corpus(tiny_cfg(), tok)
    assert len(examples) == 64 and 0.0 < clean <= 1.0
    text = tok.decode(examples[0], skip_special_tokens=True)
    assert examples[0][0] == tok.bos_token_id and examples[0][-1] == tok.eos_token_id
    assert tok.decode(examples[0][: prompt_lens[0]], skip_special_tokens=True) == text.split("\n")[0] + "\n"


def test_lr_schedule():
    cfg = ToyPretrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, steps=110)

    def lr_at(step: int) -> float:  # as _train calls it
        return cosine_lr(step, cfg.lr, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)

    assert lr_at(0) == 0.1 and lr_at(9) == 1.0
    assert abs(lr_at(60) - 0.55) < 1e-9  # half way through the cosine
    assert abs(lr_at(110) - 0.1) < 1e-9


@pytest.mark.slow
def test_tiny_pretrain_writes_loadable_folder(tmp_path):
    cfg = tiny_cfg()
    summary = run_pretrain(cfg, tmp_path, progress=False)
    assert summary["steps_done"] == 4
    curve = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert [c["step"] for c in curve] == [2, 4]
    assert all(torch.isfinite(torch.tensor(c["loss"])) for c in curve)
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert json.loads((tmp_path / "pretrain.json").read_text())["config"]["steps"] == 4

    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    init = build_toy_model(TINY_MODEL, build_toy_tokenizer())
    changed = [not torch.equal(p, q) for p, q in zip(model.parameters(), init.parameters())]
    assert all(changed)
    problems = generate_problems(cfg.world, "test", 3, 0)
    acc = greedy_accuracy(model, tok, problems, batch_size=2, max_new_tokens=8)
    assert 0.0 <= acc <= 1.0


@pytest.mark.slow
def test_cached_base_model_reuses_complete_folder(tmp_path):
    cfg = tiny_cfg(steps=2, eval_every=0)
    folder = cached_base_model(cfg, tmp_path, progress=False)
    assert folder.name == f"toy-base-{config_hash(cfg)}" and (folder / COMPLETE_MARKER).exists()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert cached_base_model(cfg, tmp_path, progress=False) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert config_hash(tiny_cfg(steps=3)) != config_hash(cfg)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


class _ScriptedModel:
    """Stands in for a causal LM: ``generate`` appends a scripted solution to each prompt,
    the right one except for question ``wrong``."""

    training = False

    def __init__(self, tokenizer, wrong: str):
        self.tokenizer, self.wrong = tokenizer, wrong

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def generate(self, input_ids, attention_mask, **kwargs):
        rows = []
        for ids in input_ids.tolist():
            question = self.tokenizer.decode(ids, skip_special_tokens=True)[3:-1]  # "Q: ...\n"
            steps = solve(question)
            answer = steps[-1].result + (1 if question == self.wrong else 0)
            completion = self.tokenizer.encode(format_solution(steps, answer), add_special_tokens=False)
            rows.append(ids + completion + [self.tokenizer.eos_token_id])
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])


def test_greedy_accuracy_counts_right_answers_through_left_padding():
    tok = build_toy_tokenizer()
    problems = generate_problems(ToyWorldConfig(), "test", 6, 0)
    model = _ScriptedModel(tok, wrong=problems[4].question)
    assert greedy_accuracy(model, tok, problems, batch_size=4) == 5 / 6
    assert tok.padding_side == "left"


@pytest.mark.slow
def test_cached_base_model_clears_stale_temporary_folders(tmp_path):
    cfg = tiny_cfg(steps=1, eval_every=0)
    stale = tmp_path / f".tmp-toy-base-{config_hash(cfg)}-999999999"
    stale.mkdir()
    (stale / "model.safetensors").write_text("half written")
    folder = cached_base_model(cfg, tmp_path, progress=False)
    assert not stale.exists() and (folder / COMPLETE_MARKER).exists()
    AutoModelForCausalLM.from_pretrained(folder)
