"""Skywork-o1-Open-PRM (the paper's PRM): a Qwen2 backbone with a scalar value head.

Input convention, from Skywork's public inference code (``skywork-o1-prm-inference``,
``prepare_input``): the prompt ``bos_token + question + "\\n"`` is tokenized as one string, then
each step is tokenized on its own and followed by the newline token; the step's value is
``sigmoid(v_head(h))`` at that newline. Their checkpoint is a causal-LM folder
(``model.*`` and ``lm_head.*`` weights) plus ``v_head.summary.weight`` / ``v_head.summary.bias``
for ``Linear(hidden, 1)``; the head runs in float32 on the backbone's last hidden state, as in
their ``ValueHead``.

``Qwen2ValueHeadModel`` rebuilds that architecture from the folder with plain transformers and
safetensors, so no code shipped with the checkpoint is ever run.

Their code prepends ``tokenizer.bos_token``; a Qwen2.5 tokenizer has none (``bos_token`` null), and
then the input starts with the question, with a warning (``bos_token`` overrides either way).

Folder: ``config.json`` (model_type ``qwen2``), tokenizer files, and ``model.safetensors`` or
``model.safetensors.index.json`` + shards holding ``model.*`` and ``v_head.summary.*``
(``lm_head.*`` is ignored).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sppd.modeling import load_tokenizer
from sppd.prm.base import EncodedInput, PRMInput
from sppd.prm.hf_common import (
    HFPRMOptions,
    load_qwen2_backbone,
    pad_token_id_of,
    read_prefixed_tensors,
    resolve_folder,
    score_with_token_model,
)
from sppd.runtime import resolve_device, resolve_dtype

HEAD_PREFIX = "v_head.summary."


class Qwen2ValueHeadModel(nn.Module):
    """``Qwen2Model`` plus ``v_head.summary = Linear(hidden, 1)``: a value per token."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.model = backbone
        self.v_head = nn.Module()
        self.v_head.summary = head

    @classmethod
    def from_folder(cls, folder: Path, dtype: torch.dtype, device: torch.device) -> Qwen2ValueHeadModel:
        backbone = load_qwen2_backbone(folder, dtype, device)
        head_state = read_prefixed_tensors(folder, HEAD_PREFIX)
        hidden = backbone.config.hidden_size
        head = nn.Linear(hidden, 1)  # float32 on purpose: Skywork's head upcasts to fp32
        head.load_state_dict({k: v.float() for k, v in head_state.items()})
        return cls(backbone, head)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Raw head outputs (logits of the value), shape ``(B, T)``, float32."""
        hidden = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        head = self.v_head.summary
        return head(hidden.to(head.weight.dtype)).squeeze(-1)


def newline_id_of(tokenizer: Any) -> int:
    """Skywork takes the last id of ``encode("\\n")``: the token appended after each step."""
    return tokenizer("\n", add_special_tokens=False)["input_ids"][-1]


def skywork_input(tokenizer: Any, bos_token: str, newline_id: int, item: PRMInput) -> EncodedInput:
    """``bos + question + "\\n"`` as one string, then per step: its ids and a newline id.

    A step's own trailing newlines are dropped because the adapter adds the separator. The one
    input layout of scoring (``SkyworkPRM.encode``) and training (:mod:`sppd.prm.value_head`).
    """
    input_ids = list(tokenizer(bos_token + item.question + "\n", add_special_tokens=False)["input_ids"])
    positions = []
    for step in item.steps:
        input_ids += tokenizer(step.rstrip("\n"), add_special_tokens=False)["input_ids"]
        input_ids.append(newline_id)
        positions.append(len(input_ids) - 1)
    return EncodedInput(input_ids=input_ids, score_positions=positions)


def skywork_bos(tokenizer: Any, bos_token: str | None, folder: Path) -> str:
    """The text put before the question: ``bos_token`` if given, else the tokenizer's bos token,
    else nothing (Qwen2.5 tokenizers have none), with a warning."""
    bos = bos_token if bos_token is not None else tokenizer.bos_token
    if bos is None:
        warnings.warn(
            f"{folder}: the tokenizer has no bos_token; Skywork inputs start with the question "
            "(config key 'score.skywork_bos' sets a prefix)",
            stacklevel=3,
        )
        bos = ""
    return bos


class SkyworkPRM:
    """Skywork-o1-Open-PRM adapter; a ``TokenLevelPRM``."""

    name = "skywork"

    def __init__(self, model: Qwen2ValueHeadModel, tokenizer: Any, options: HFPRMOptions, bos_token: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.bos_token = bos_token
        self.device = next(model.parameters()).device
        self.pad_token_id = pad_token_id_of(tokenizer)
        self.newline_id = newline_id_of(tokenizer)

    def encode(self, item: PRMInput) -> EncodedInput:
        return skywork_input(self.tokenizer, self.bos_token, self.newline_id, item)

    def token_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """``sigmoid`` of the value head at every token, ``(B, T)``."""
        return torch.sigmoid(self.model(input_ids, attention_mask, position_ids))

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        return score_with_token_model(self, items, self.options, self.device)


def build_skywork_prm(path: str | Path, *, bos_token: str | None = None, **options: Any) -> SkyworkPRM:
    """Load a Skywork-o1-Open-PRM folder; ``options`` are ``HFPRMOptions`` fields.

    ``bos_token``: the text put before the question (``""``: nothing); None takes the tokenizer's
    bos token, or nothing when it has none (Qwen2.5 tokenizers), with a warning.
    """
    opts = HFPRMOptions(path=path, **options)
    folder = resolve_folder(path)
    tokenizer = load_tokenizer(folder, opts.trust_remote_code)
    bos = skywork_bos(tokenizer, bos_token, folder)
    device = resolve_device(opts.device)
    model = Qwen2ValueHeadModel.from_folder(folder, resolve_dtype(opts.dtype, device), device)
    model = model.to(device).eval().requires_grad_(False)
    return SkyworkPRM(model, tokenizer, opts, bos)
