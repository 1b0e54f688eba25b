"""Train (or update) a Skywork-format PRM from any local HF causal-LM folder.

The paper never updates its PRM; this module lets a user with a real model fit one on their own
trees. The backbone is the folder's base model (``AutoModel``: the causal LM without its
``lm_head``), topped with Skywork's value head ``Linear(hidden, 1)``. A folder that already is a
Skywork-format PRM keeps its head, so training *updates* that PRM; any other folder gets a zero
head (every step starts at 0.5, as the toy PRM does).

Inputs are built by the Skywork adapter itself (the trainer is a :class:`SkyworkPRM` around the
trainable model, so ``encode`` is :func:`sppd.prm.skywork.skywork_input`): what is trained is
exactly what ``score.scorer=skywork`` scores. Labels and the loss are the toy PRM's
(:func:`sppd.prm.toy_labels.labelled_paths`: each distinct node once, soft MC values or hard 0/1;
:func:`sppd.prm.toy.bce_loss` at each step's newline). Steps go through the shared optimizer
core :func:`sppd.train.steps.run_steps` with the cosine schedule of :mod:`sppd.train.schedule`.

The result is saved in the Skywork layout (``config.json``, tokenizer, ``model.safetensors``
with ``model.*`` and ``v_head.summary.*``) plus ``sppd_prm.json`` (metrics), in float32; the
Skywork adapter loads it unchanged (it reads qwen2 backbones). One process trains, on one device:
a 7B backbone with AdamW in float32 needs a large accelerator.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from sppd.prm.hf_common import HFPRMOptions, quiet_transformers, read_prefixed_tensors, resolve_folder
from sppd.prm.skywork import HEAD_PREFIX, Qwen2ValueHeadModel, SkyworkPRM, skywork_bos
from sppd.prm.toy import fit_bce, split_by_problem
from sppd.prm.toy_labels import LabelledPath, label_options, labelled_paths
from sppd.records import Tree
from sppd.runtime import resolve_device
from sppd.settings import PRMTrainConfig
from sppd.train.schedule import cosine_lr, warmup_steps
from sppd.types import DType, PRMLabel, StepChecker

META_FILE = "sppd_prm.json"
FORMAT_VERSION = 1


def load_value_model(folder: str | Path, device: str = "auto") -> SkyworkPRM:
    """A trainable Skywork-format PRM (float32) from a causal-LM or Skywork-format PRM folder."""
    from transformers import AutoModel

    from sppd.modeling import load_tokenizer

    folder = resolve_folder(folder)
    with quiet_transformers():  # lm_head / v_head keys are expected to be unused here
        backbone, info = AutoModel.from_pretrained(
            folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
        )
    if info["missing_keys"]:
        raise KeyError(
            f"{folder}: backbone weights missing: {sorted(info['missing_keys'])[:5]} (config key 'prm.init')"
        )
    head = nn.Linear(backbone.config.hidden_size, 1)
    try:
        head.load_state_dict({k: v.float() for k, v in read_prefixed_tensors(folder, HEAD_PREFIX).items()})
    except (KeyError, FileNotFoundError):  # not a Skywork-format PRM yet: a fresh head
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    target = resolve_device(device)
    model = Qwen2ValueHeadModel(backbone, head).to(target)
    tokenizer = load_tokenizer(folder, False)
    options = HFPRMOptions(path=folder, device=str(target), dtype=DType.FP32)
    return SkyworkPRM(model, tokenizer, options, skywork_bos(tokenizer, None, folder))


def save_skywork_folder(prm: SkyworkPRM, folder: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``prm`` in the Skywork layout (see the module docstring); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    backbone = prm.model.model
    # clone: tied or shared tensors cannot be written by safetensors as views of one storage
    state = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in backbone.state_dict().items()}
    state |= {HEAD_PREFIX + k: v.detach().cpu().clone() for k, v in prm.model.v_head.summary.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    backbone.config.save_pretrained(folder)
    prm.tokenizer.save_pretrained(folder)
    meta = {"format": FORMAT_VERSION, "kind": "skywork-prm", "bos": prm.bos_token, "metrics": metrics or {}}
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return folder


def train_value_head_prm(
    trees: Sequence[Tree],
    cfg: PRMTrainConfig,
    init: str | Path,
    *,
    seed: int = 0,
    progress: bool = False,
    step_judge: StepChecker | None = None,
) -> tuple[SkyworkPRM, dict[str, Any]]:
    """Fit the PRM loaded from ``init`` on the MC labels of ``trees`` (``step_judge``'s process
    labels with ``cfg.label`` process); returns it and its metrics (held-out ones under ``val``
    when ``cfg.val_fraction`` leaves problems out)."""
    if PRMLabel(cfg.label) is PRMLabel.LOCAL:  # the Skywork adapter scores the head's value, never a min
        raise ValueError("prm.label=local is for the toy PRM only; use process for an hf PRM")
    train_trees, val_trees = split_by_problem(trees, cfg.val_fraction, seed)
    torch.manual_seed(seed)
    prm = load_value_model(init)
    hard, judge = label_options(cfg.label, step_judge)
    examples = labelled_paths(prm, train_trees, cfg.min_mc_paths, hard=hard, step_judge=judge)
    if not examples:
        raise ValueError("no labelled paths: do the trees (config key 'prm.trees') have complete paths and MC values?")
    start = time.perf_counter()
    curve = fit(prm, examples, cfg, seed, progress)
    prm.model.eval()
    metrics = {
        "train_problems": len(train_trees),
        "val_problems": len(val_trees),
        "train_paths": len(examples),
        "train_labels": sum(len(p) for _, p, _ in examples),
        "epochs": cfg.epochs,
        "seconds": round(time.perf_counter() - start, 2),
        "curve": curve,
        "train_loss": curve[-1]["train_loss"] if curve else None,
        "init": str(init),
    }
    if val_trees:
        metrics["val"] = label_agreement(
            prm, labelled_paths(prm, val_trees, cfg.min_mc_paths, hard=hard, step_judge=judge)
        )
    return prm, metrics


def fit(prm: SkyworkPRM, examples: list[LabelledPath], cfg: PRMTrainConfig, seed: int, progress: bool) -> list[dict]:
    """The toy PRM's trainer (:func:`sppd.prm.toy.fit_bce`) with warmup + cosine decay from
    ``cfg.lr`` and no weight decay (the backbone is a pretrained model, not a from-scratch toy)."""
    total = cfg.epochs * math.ceil(len(examples) / cfg.batch_size)
    warmup = warmup_steps(total, cfg.warmup_ratio)
    return fit_bce(
        prm,
        examples,
        cfg,
        seed,
        progress,
        weight_decay=0.0,
        schedule=lambda step: cosine_lr(step, cfg.lr, total, warmup),
        desc="prm train (hf)",
    )


def label_agreement(prm: SkyworkPRM, examples: Sequence[LabelledPath]) -> dict[str, Any]:
    """Scores against labels: BCE, MAE, and agreement of ``score > 0.5`` with ``label > 0.5``."""
    if not examples:
        return {"labels": 0, "bce": None, "mae": None, "agreement": None}
    was_training = prm.model.training
    prm.model.eval()
    pairs = []
    with torch.no_grad():
        for ids, positions, targets in examples:
            batch = torch.tensor([ids], device=prm.device)
            logits = prm.model(batch, torch.ones_like(batch), torch.arange(len(ids), device=prm.device)[None])
            pairs += zip(torch.sigmoid(logits[0, positions]).tolist(), targets)
    prm.model.train(was_training)
    eps = 1e-6
    bce = -sum(y * math.log(max(s, eps)) + (1 - y) * math.log(max(1 - s, eps)) for s, y in pairs) / len(pairs)
    return {
        "labels": len(pairs),
        "bce": bce,
        "mae": sum(abs(s - y) for s, y in pairs) / len(pairs),
        "agreement": sum((s > 0.5) == (y > 0.5) for s, y in pairs) / len(pairs),
    }
