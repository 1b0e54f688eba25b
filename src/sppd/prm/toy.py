"""The learned toy PRM: a tiny Llama backbone with a value head, trained on tree MC labels.

It gives the toy world what the paper had in Skywork-o1-Open-PRM: a learned, imperfect PRM
that can score any trajectory, also ones that are in no tree (ORM_VOTE/ORM_MAX at evaluation).
It follows Skywork's convention, in the toy world's text format: the input is the toy prompt
(``<bos>Q: <question>\\n``), then each step followed by ``"\\n"``; the value after a step is
``sigmoid(value_head(h))`` at that step's newline.

With ``prm.label: local`` (the toy default) the head is instead the policy's LM head, judging
every token of a step, and a step's value is the min over the path's step tokens
(:mod:`sppd.prm.toy_token`).

On disk it is an HF-style folder: the ``LlamaModel`` backbone (``config.json`` +
``model.safetensors`` via ``save_pretrained``), the tokenizer, ``value_head.safetensors`` (the
head's tensors: ``value_head.*``, or ``lm_head.weight``/``scale``/``bias``) and ``toy_prm.json``
(format version, ``head``: value or token, and training metrics). Format 1 folders (a value head
whose file holds ``weight``/``bias``) still load.

Training (``train_toy_prm``, on the shared step core :func:`sppd.train.steps.run_steps`) fits
soft targets, the trees' MC values (or with ``prm.label: process`` the task's step judge: 1 while
every step so far is right), with binary cross-entropy at the newline of each step. Each
distinct node is labelled once (on the first complete path through it, in leaf order), not once
per path: a node near the root lies on most paths, so per-path labelling would weight the
shallow, mostly easy states by their number of descendants and drown the late steps where the
errors are. Once per node gives every distinct state the same weight, like the packed-tree
scoring does. The SFT/DPO loop's outer part (:func:`sppd.train.loop.train_loop`) is not used:
its step plan (torch-seeded permutation, tail kept only when it fills every micro-batch, losses
weighted over the whole step) would change the trained PRM, and a run of seconds to minutes
needs no checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sppd.prm.base import EncodedInput, PRMInput
from sppd.prm.hf_common import HFPRMOptions, pad_right, pad_token_id_of, score_with_token_model
from sppd.prm.report import held_out_metrics
from sppd.prm.toy_labels import (
    LabelledPath,
    label_options,
    labelled_paths,
    labelled_paths_from_solutions,
    labelled_solutions,
    local_labelled_solutions,
)
from sppd.prm.toy_token import ToyTokenModel
from sppd.records import Tree
from sppd.runtime import resolve_device
from sppd.settings import PRMTrainConfig
from sppd.toy.world import STEP_DELIMITER, prompt_text
from sppd.train.steps import Step, StepResult, run_steps
from sppd.types import DType, PRMLabel, StepChecker

FORMAT_VERSION = 2  # 2: ``toy_prm.json`` names the head; a format-1 folder has the value head
META_FILE = "toy_prm.json"
HEAD_FILE = "value_head.safetensors"  # the head's tensors, whichever head it is
HEADS = ("value", "token")  # ToyValueModel; sppd.prm.toy_token.ToyTokenModel (prm.label: local)


class ToyValueModel(nn.Module):
    """``LlamaModel`` + ``value_head = Linear(hidden, 1)``: one value logit per token."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.model = backbone  # named like Skywork's so packing finds the backbone config
        self.value_head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)  # start at 0.5 everywhere, not at random values
        nn.init.zeros_(self.value_head.bias)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Value logits ``(B, T)`` for ``(B, T)`` ids; the mask may be ``(B, T)`` or ``(B, 1, T, T)``."""
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, T, H)
        return self.value_head(hidden).squeeze(-1)


class ToyPRM:
    """The toy PRM as a ``TokenLevelPRM`` (``encode``/``token_scores`` let trees be packed)."""

    name = "toy"

    def __init__(
        self,
        model: ToyValueModel,
        tokenizer: Any,
        batch_size: int = 64,
        max_batch_tokens: int = 16384,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id_of(tokenizer)
        self.newline_id = tokenizer(STEP_DELIMITER, add_special_tokens=False)["input_ids"][-1]
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, item: PRMInput) -> EncodedInput:
        """``<bos>Q: question\\n`` then per step its characters and a newline (scored there)."""
        input_ids = list(self.tokenizer(prompt_text(item.question))["input_ids"])
        positions = []
        for step in item.steps:
            input_ids += self.tokenizer(step.rstrip("\n"), add_special_tokens=False)["input_ids"]
            input_ids.append(self.newline_id)
            positions.append(len(input_ids) - 1)
        return EncodedInput(input_ids=input_ids, score_positions=positions)

    def token_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """``sigmoid`` of the value head at every token, ``(B, T)``; for the token head the running
        min over the path's step tokens (``ToyTokenModel.prefix_scores``)."""
        if isinstance(self.model, ToyTokenModel):
            return self.model.prefix_scores(input_ids, attention_mask, position_ids)
        return torch.sigmoid(self.model(input_ids, attention_mask, position_ids))

    @property
    def head(self) -> str:
        return "token" if isinstance(self.model, ToyTokenModel) else "value"

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        options = HFPRMOptions(
            path="<toy>",
            device=str(self.device),
            dtype=DType.FP32,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
        )
        was_training = self.model.training
        self.model.eval()
        try:
            return score_with_token_model(self, items, options, self.device)
        finally:
            self.model.train(was_training)

    def save(self, folder: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the HF-style folder described in the module docstring; returns it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        head = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items() if k[:6] != "model."}
        save_file(head, str(folder / HEAD_FILE))
        meta = {
            "format": FORMAT_VERSION,
            "kind": "toy-prm",
            "head": self.head,
            "score": "sigmoid at each step's newline"
            if self.head == "value"
            else "min over the path's step tokens of sigmoid(scale * log p(token) + bias)",
            "hidden_size": self.model.model.config.hidden_size,
            "metrics": metrics or {},
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return folder


def new_toy_prm(backbone: nn.Module, tokenizer: Any, lm_head: nn.Linear | None = None) -> ToyPRM:
    """A toy PRM around ``backbone`` (a ``LlamaModel``): with a fresh zero value head, or with the
    token head over ``lm_head`` when one is given (``prm.label: local``)."""
    if lm_head is None:
        return ToyPRM(ToyValueModel(backbone), tokenizer)
    newline_id = tokenizer(STEP_DELIMITER, add_special_tokens=False)["input_ids"][-1]
    return ToyPRM(ToyTokenModel(backbone, lm_head, newline_id), tokenizer)


def backbone_from_policy(policy_path: str | Path, with_lm_head: bool = False) -> tuple[nn.Module, Any]:
    """``(LlamaModel, tokenizer)`` of a policy folder: the causal LM's ``.model``, lm_head dropped
    (or ``((LlamaModel, lm_head), tokenizer)`` with ``with_lm_head``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    policy = AutoModelForCausalLM.from_pretrained(str(policy_path), local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(policy_path), local_files_only=True)
    return ((policy.model, policy.lm_head) if with_lm_head else policy.model), tokenizer


def random_backbone(model_cfg=None, with_lm_head: bool = False) -> tuple[nn.Module, Any]:
    """``(LlamaModel, toy tokenizer)`` randomly initialised as the toy policy would be (the model
    is ``(LlamaModel, lm_head)`` with ``with_lm_head``)."""
    from sppd.toy.config import ToyModelConfig
    from sppd.toy.model import build_toy_model
    from sppd.toy.tokenizer import build_toy_tokenizer

    tokenizer = build_toy_tokenizer()
    policy = build_toy_model(model_cfg or ToyModelConfig(), tokenizer)
    return ((policy.model, policy.lm_head) if with_lm_head else policy.model), tokenizer


def build_toy_prm(
    path: str | Path, device: str = "cpu", batch_size: int = 64, max_batch_tokens: int = 16384
) -> ToyPRM:
    """Load a toy PRM folder written by ``ToyPRM.save`` (registry factory for ``toy``)."""
    from transformers import AutoTokenizer, LlamaModel

    folder = Path(path)
    meta_file = folder / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder}: no {META_FILE}; train a toy PRM first (sppd prm train)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") not in (1, FORMAT_VERSION):
        raise ValueError(f"{meta_file}: format {meta.get('format')!r}, this sppd reads 1 and {FORMAT_VERSION}")
    head = meta.get("head", "value")  # format 1 had only the value head
    if head not in HEADS:
        raise ValueError(f"{meta_file}: head {head!r}, this sppd reads {', '.join(HEADS)}")
    backbone = LlamaModel.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    hidden = backbone.config.hidden_size
    lm_head = nn.Linear(hidden, backbone.config.vocab_size, bias=False) if head == "token" else None
    prm = new_toy_prm(backbone, tokenizer, lm_head)
    tensors = load_file(str(folder / HEAD_FILE))
    if meta["format"] == 1:  # the value head's own keys
        tensors = {f"value_head.{k}": v for k, v in tensors.items()}
    missing, unexpected = prm.model.load_state_dict(tensors, strict=False)
    if unexpected or any(not k.startswith("model.") for k in missing):
        raise ValueError(f"{folder / HEAD_FILE}: not a {head} head (missing {missing[:3]}, extra {unexpected[:3]})")
    prm.model = prm.model.to(resolve_device(device)).eval()
    prm.batch_size, prm.max_batch_tokens = batch_size, max_batch_tokens
    return prm


# --- training ---------------------------------------------------------------------------------


def split_by_problem(trees: Sequence[Tree], val_fraction: float, seed: int) -> tuple[list[Tree], list[Tree]]:
    """``(train, val)`` trees; a problem's side is fixed by a hash of its id and ``seed``."""

    def bucket(tree: Tree) -> float:
        digest = hashlib.sha256(f"prm-val/{seed}/{tree.problem.id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    val = [t for t in trees if bucket(t) < val_fraction]
    train = [t for t in trees if bucket(t) >= val_fraction]
    if not train:
        raise ValueError(f"prm.val_fraction={val_fraction} leaves no training problems out of {len(trees)}")
    return train, val


def bce_loss(prm: ToyPRM, batch: Sequence[LabelledPath]) -> torch.Tensor:
    """Mean soft-target BCE over the labelled positions of a batch of paths (scalar)."""
    device = prm.device
    input_ids, attention_mask, position_ids = pad_right([ids for ids, _, _ in batch], prm.pad_token_id, device)
    logits = prm.model(input_ids, attention_mask, position_ids)  # (B, T)
    rows = torch.tensor([b for b, (_, pos, _) in enumerate(batch) for _ in pos], device=device)
    cols = torch.tensor([p for _, pos, _ in batch for p in pos], device=device)
    targets = torch.tensor([y for _, _, ys in batch for y in ys], device=device)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[rows, cols], targets)


def train_toy_prm(
    trees: Sequence[Tree],
    cfg: PRMTrainConfig,
    policy_path: str | Path | None = None,
    *,
    seed: int = 0,
    model_cfg: Any = None,
    progress: bool = True,
    world: Any = None,
    step_judge: StepChecker | None = None,
) -> tuple[ToyPRM, dict[str, Any]]:
    """Train a toy PRM on the MC labels of ``trees`` (``mc_value``/``mc_count`` attached), or on
    the process labels of ``step_judge`` (required) with ``cfg.label`` process.

    The backbone starts from the policy at ``policy_path`` when ``cfg.init_from_policy``
    (required then), else from a random toy Llama (``model_cfg``: a ``ToyModelConfig``).
    Returns the PRM and its metrics, held-out ones included (see ``sppd.prm.report.held_out_metrics``).
    """
    hard, judge = label_options(cfg.label, step_judge)
    local = PRMLabel(cfg.label) is PRMLabel.LOCAL
    train_trees, val_trees = split_by_problem(trees, cfg.val_fraction, seed)
    if cfg.init_from_policy:
        if policy_path is None:
            raise ValueError("prm.init_from_policy is set but no policy folder was given")
        backbone, tokenizer = backbone_from_policy(policy_path, with_lm_head=local)
    else:
        backbone, tokenizer = random_backbone(model_cfg, with_lm_head=local)
    prm = new_toy_prm(backbone[0], tokenizer, backbone[1]) if local else new_toy_prm(backbone, tokenizer)
    examples = labelled_paths(prm, train_trees, cfg.min_mc_paths, hard=hard, step_judge=judge, local=local)
    n_tree_paths = len(examples)
    if cfg.synthetic_solutions > 0:  # labelled toy solutions (see sppd.prm.toy_labels)
        from sppd.toy.config import ToyWorldConfig

        world = world or ToyWorldConfig()
        solutions = (
            local_labelled_solutions(world, cfg.synthetic_solutions, seed, judge)
            if local
            else labelled_solutions(world, cfg.synthetic_solutions, seed)
        )
        examples += labelled_paths_from_solutions(prm, solutions, local=local)
    if not examples:
        raise ValueError("no labelled paths: do the trees have complete paths and MC values?")
    start = time.perf_counter()
    curve = fit_bce(prm, examples, cfg, seed, progress)
    prm.model.eval()
    metrics = {
        "train_problems": len(train_trees),
        "val_problems": len(val_trees),
        "train_paths": len(examples),
        "tree_paths": n_tree_paths,
        "train_labels": sum(len(p) for _, p, _ in examples),
        "epochs": cfg.epochs,
        "seconds": round(time.perf_counter() - start, 2),
        "curve": curve,
        "train_loss": curve[-1]["train_loss"] if curve else None,
        "init_from_policy": str(policy_path) if cfg.init_from_policy else None,
    }
    if val_trees:
        metrics["val"] = held_out_metrics(prm, val_trees, cfg.min_mc_paths)
    return prm, metrics


def _epochs(n_examples: int, batch_size: int, epochs: int, rng: random.Random) -> Iterator[Step]:
    """Every epoch a fresh shuffle of the examples, cut into batches (the last one may be short)."""
    for _ in range(epochs):
        order = list(range(n_examples))
        rng.shuffle(order)
        for i in range(0, n_examples, batch_size):
            yield Step([order[i : i + batch_size]])


def fit_bce(
    prm,
    examples: list[LabelledPath],
    cfg: PRMTrainConfig,
    seed: int,
    progress: bool,
    *,
    weight_decay: float = 0.01,
    schedule=None,
    desc: str = "prm train",
) -> list[dict]:
    """BCE on step labels with AdamW, gradient norm clipped to 1, on the shared step core
    (:func:`sppd.train.steps.run_steps`); ``schedule`` maps a step to its learning rate (None:
    constant ``cfg.lr``). Used by the toy PRM and the HF value-head trainer. Returns the
    per-epoch mean training loss (each entry also has the epoch's last step loss)."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(prm.model.parameters(), lr=cfg.lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=desc, unit="step", disable=not progress)
    curve: list[dict] = []
    losses: list[float] = []

    def loss_fn(batch: list[int]) -> tuple[torch.Tensor, dict]:
        loss = bce_loss(prm, [examples[j] for j in batch])
        return loss, {"loss": loss}

    def on_step(result: StepResult) -> None:
        losses.append(result.sums["loss"].item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if (result.step + 1) % steps_per_epoch == 0:
            curve.append({"epoch": len(curve) + 1, "train_loss": sum(losses) / len(losses), "last_loss": losses[-1]})
            losses.clear()

    steps = _epochs(len(examples), cfg.batch_size, cfg.epochs, random.Random(seed))
    run_steps(prm.model, optimizer, steps, loss_fn, schedule=schedule, max_grad_norm=1.0, on_step=on_step, bar=bar)
    bar.close()
    return curve
