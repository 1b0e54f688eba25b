"""Tokenized examples -> padded tensor batches with loss masks.

Three shapes, one per way a model is run:

* :class:`SFTBatch`: one right-padded row per example, loss on completion tokens.
* :class:`PairBatch` with ``rows``: two rows per pair (``[chosen rows; rejected rows]``, the usual
  DPO layout), loss mask on each completion.
* :class:`PairBatch` with ``packed``: one row per pair, prefix + chosen + rejected, from
  :func:`sppd.packing.pack_pairs` (step pairs with ``train.prefix_sharing``).

Right padding everywhere: with causal attention, real tokens never see the padding after them,
so no position ids are needed. ``n_tokens`` counts what an unshared implementation processes
(no padding), the number behind every tokens/s in this project.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from sppd.data.tokenize import PairTokens, SFTTokens
from sppd.packing import PackedPairBatch, pack_pairs


def _to(obj, device):
    """Copy of a frozen dataclass with every tensor (and nested batch) moved to ``device``."""
    values = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is not None and hasattr(value, "to"):  # tensors and nested batches
            value = value.to(device)
        values[f.name] = value
    return type(obj)(**values)


def _pad_rows(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ``rows`` -> ``(ids (N, T), attention_mask (N, T))``."""
    seq_len = max(len(r) for r in rows)
    ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), seq_len), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


@dataclass(frozen=True)
class SFTBatch:
    """``input_ids``, ``attention_mask``, ``loss_mask``: (B, T); ``prompt_lens``: (B,)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    prompt_lens: torch.Tensor
    n_tokens: int

    def to(self, device) -> SFTBatch:
        return _to(self, device)


def collate_sft(examples: list[SFTTokens], pad_id: int) -> SFTBatch:
    """Prompt + completion per row; ``loss_mask`` is 1 exactly on the completion tokens."""
    ids, attention = _pad_rows([e.prompt_ids + e.completion_ids for e in examples], pad_id)
    loss_mask = torch.zeros_like(ids)
    for i, e in enumerate(examples):
        loss_mask[i, len(e.prompt_ids) : len(e.prompt_ids) + len(e.completion_ids)] = 1
    return SFTBatch(
        input_ids=ids,
        attention_mask=attention,
        loss_mask=loss_mask,
        prompt_lens=torch.tensor([len(e.prompt_ids) for e in examples]),
        n_tokens=sum(e.n_tokens for e in examples),
    )


@dataclass(frozen=True)
class PairRows:
    """Unshared pair layout: rows ``0..B-1`` are prompt+chosen, ``B..2B-1`` prompt+rejected.

    ``input_ids``, ``attention_mask``, ``loss_mask``: (2B, T); ``prompt_lens``: (B,).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    prompt_lens: torch.Tensor

    def to(self, device) -> PairRows:
        return _to(self, device)


@dataclass(frozen=True)
class PairBatch:
    """B preference pairs, as ``rows`` (unshared) or ``packed`` (prefix shared); exactly one is set.

    ``chosen_values``/``rejected_values``: (B,) V(s_w), V(s_l) for the step-DPO margin.
    ``ref_chosen_logps``/``ref_rejected_logps``: (B,) from the reference cache, or None before it
    is attached (:meth:`with_ref`).
    """

    chosen_values: torch.Tensor
    rejected_values: torch.Tensor
    n_tokens: int
    chosen_lens: torch.Tensor | None = None  # (B,) chosen completion tokens (the NLL term's normaliser)
    rows: PairRows | None = None
    packed: PackedPairBatch | None = None
    ref_chosen_logps: torch.Tensor | None = None
    ref_rejected_logps: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.chosen_values.shape[0])

    def with_ref(self, chosen_logps: torch.Tensor, rejected_logps: torch.Tensor) -> PairBatch:
        return replace(self, ref_chosen_logps=chosen_logps, ref_rejected_logps=rejected_logps)

    def to(self, device) -> PairBatch:
        return _to(self, device)


def _pair_rows(examples: list[PairTokens], pad_id: int) -> PairRows:
    rows = [e.prompt_ids + e.chosen_ids for e in examples] + [e.prompt_ids + e.rejected_ids for e in examples]
    ids, attention = _pad_rows(rows, pad_id)
    loss_mask = torch.zeros_like(ids)
    for i, e in enumerate(examples):
        p = len(e.prompt_ids)
        loss_mask[i, p : p + len(e.chosen_ids)] = 1
        loss_mask[len(examples) + i, p : p + len(e.rejected_ids)] = 1
    return PairRows(
        input_ids=ids,
        attention_mask=attention,
        loss_mask=loss_mask,
        prompt_lens=torch.tensor([len(e.prompt_ids) for e in examples]),
    )


def collate_pairs(examples: list[PairTokens], pad_id: int, prefix_sharing: bool) -> PairBatch:
    """Pairs as two rows each, or (``prefix_sharing``) one packed row each."""
    common = dict(
        chosen_values=torch.tensor([e.chosen_value for e in examples], dtype=torch.float32),
        rejected_values=torch.tensor([e.rejected_value for e in examples], dtype=torch.float32),
        n_tokens=sum(e.n_tokens for e in examples),
        chosen_lens=torch.tensor([len(e.chosen_ids) for e in examples], dtype=torch.float32),
    )
    if prefix_sharing:
        packed = pack_pairs(
            [e.prompt_ids for e in examples],
            [e.chosen_ids for e in examples],
            [e.rejected_ids for e in examples],
            pad_id=pad_id,
        )
        return PairBatch(packed=packed, **common)
    return PairBatch(rows=_pair_rows(examples, pad_id), **common)
