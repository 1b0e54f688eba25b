"""Qwen2.5-Math-PRM (7B / 72B, and Qwen2.5-Math-7B-PRM800K): a Qwen2 backbone with a 2-way head.

Input convention, from the model card: the tokenizer's chat template applied to
``[system, user, assistant]`` messages with system
``"Please reason step by step, and put your final answer within \\boxed{}."``, the question as
the user turn, and the steps joined by ``<extra_0>`` with a trailing ``<extra_0>`` as the
assistant turn (``add_generation_prompt=False``); the rendered string is encoded with
``tokenizer.encode``. A step's score is ``softmax(logits)[..., 1]`` (the positive class) at each
``<extra_0>`` token. The card recommends steps split at ``"\\n\\n"``; we strip each step's
surrounding whitespace so the separator sits right after the step's text.

The checkpoint (``Qwen2ForProcessRewardModel``, published as remote code) is ``model.*`` plus
``score.0`` = ``Linear(hidden, hidden)``, ReLU, ``score.2`` = ``Linear(hidden, 2)``; we rebuild
it here so trust_remote_code stays off.

Folder: ``config.json`` (model_type ``qwen2``), tokenizer files with a chat template and the
``<extra_0>`` token, and ``model.safetensors`` or an index + shards holding ``model.*`` and
``score.0.*`` / ``score.2.*``.
"""

from __future__ import annotations

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
    single_token_id,
)
from sppd.runtime import resolve_device, resolve_dtype

SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_SEPARATOR = "<extra_0>"
HEAD_PREFIX = "score."


class Qwen2ProcessRewardModel(nn.Module):
    """``Qwen2Model`` plus ``score = Sequential(Linear(h, h), ReLU, Linear(h, labels))``."""

    def __init__(self, backbone: nn.Module, score: nn.Sequential) -> None:
        super().__init__()
        self.model = backbone
        self.score = score

    @classmethod
    def from_folder(cls, folder: Path, dtype: torch.dtype, device: torch.device) -> Qwen2ProcessRewardModel:
        backbone = load_qwen2_backbone(folder, dtype, device)
        head_state = read_prefixed_tensors(folder, HEAD_PREFIX)
        hidden = backbone.config.hidden_size
        n_labels = head_state["2.weight"].shape[0]  # from the weights: configs disagree on it
        score = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_labels))
        score.load_state_dict(head_state)
        return cls(backbone, score.to(dtype))  # the head runs in the model dtype, as upstream

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Per-token class logits, shape ``(B, T, labels)``."""
        hidden = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        ).last_hidden_state
        return self.score(hidden)


class QwenMathPRM:
    """Qwen2.5-Math-PRM adapter; a ``TokenLevelPRM``."""

    name = "qwen25-math-prm"

    def __init__(
        self,
        model: Qwen2ProcessRewardModel,
        tokenizer: Any,
        options: HFPRMOptions,
        system_prompt: str = SYSTEM_PROMPT,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.system_prompt = system_prompt
        self.device = next(model.parameters()).device
        self.pad_token_id = pad_token_id_of(tokenizer)
        self.separator_id = single_token_id(tokenizer, STEP_SEPARATOR)

    def render(self, item: PRMInput) -> str:
        """The chat-template string the model card builds for this item."""
        answer = STEP_SEPARATOR.join(step.strip() for step in item.steps) + STEP_SEPARATOR
        messages = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": item.question},
            {"role": "assistant", "content": answer},
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)

    def encode(self, item: PRMInput) -> EncodedInput:
        input_ids = list(self.tokenizer(self.render(item))["input_ids"])  # = tokenizer.encode
        positions = [i for i, token in enumerate(input_ids) if token == self.separator_id]
        return EncodedInput(input_ids=input_ids, score_positions=positions)

    def token_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Probability of the positive class (index 1) at every token, ``(B, T)``."""
        logits = self.model(input_ids, attention_mask, position_ids)
        return torch.softmax(logits.float(), dim=-1)[..., 1]

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        return score_with_token_model(self, items, self.options, self.device)


def build_qwen_math_prm(path: str | Path, *, system_prompt: str = SYSTEM_PROMPT, **options: Any) -> QwenMathPRM:
    """Load a Qwen2.5-Math-PRM folder; ``options`` are ``HFPRMOptions`` fields."""
    opts = HFPRMOptions(path=path, **options)
    folder = resolve_folder(path)
    tokenizer = load_tokenizer(folder, opts.trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"{folder}: the tokenizer has no chat template, which this PRM needs")
    device = resolve_device(opts.device)
    model = Qwen2ProcessRewardModel.from_folder(folder, resolve_dtype(opts.dtype, device), device)
    model = model.to(device).eval().requires_grad_(False)
    return QwenMathPRM(model, tokenizer, opts, system_prompt)
