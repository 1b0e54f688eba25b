"""Step-pair log-probs with the shared prefix computed once, from rows packed by ``sppd.packing``.

:func:`packed_pair_logps` runs ONE forward over rows of ``[prefix][chosen][rejected]`` (see
:func:`sppd.packing.pack_pairs` for the layout, the mask and why it matches the unshared
sequences); :func:`unshared_pair_logps` is the two-sequences-per-pair reference it is tested
and benchmarked against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sppd.losses import sequence_logps, token_logps
from sppd.packing import SUPPORTED_ATTENTION, PackedPairBatch, additive_attention_mask


@dataclass(frozen=True)
class PairLogps:
    """Summed log-probs of each pair's two steps given the prefix (all fields (B,))."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_n_tokens: torch.Tensor
    rejected_n_tokens: torch.Tensor


def _check_attention(model: torch.nn.Module) -> None:
    # DDP and DeepSpeed wrappers keep the HF model (and its config) under `.module`.
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation not in SUPPORTED_ATTENTION:
        raise ValueError(
            f"prefix sharing needs a dense 4D attention mask, which works with attn_implementation in "
            f"{SUPPORTED_ATTENTION}; this model uses {implementation!r}"
        )


def packed_pair_logps(model: torch.nn.Module, batch: PackedPairBatch) -> PairLogps:
    """Chosen and rejected summed log-probs from ONE forward over the packed rows.

    Args:
        model: a Hugging Face causal LM (Llama, Qwen2, ...) with eager or sdpa attention, bare
            or wrapped by DDP/DeepSpeed. The mask takes the parameters' dtype; under autocast
            with fp32 parameters both backends accept the fp32 mask.
        batch: from :func:`pack_pairs`, already on the model's device.

    Returns:
        :class:`PairLogps`; gradients flow to the model parameters.
    """
    _check_attention(model)
    dtype = next(model.parameters()).dtype
    # Logits before the earliest last-prefix row are never used: skip their lm_head projection.
    first_kept = int(batch.prefix_lens.min()) - 1
    seq_len = batch.input_ids.shape[1]
    logits = model(
        input_ids=batch.input_ids,
        attention_mask=additive_attention_mask(batch.attention_mask_4d, dtype),
        position_ids=batch.position_ids,
        use_cache=False,
        logits_to_keep=seq_len - first_kept,
    ).logits  # (B, T - first_kept, V)
    # Unscored tokens point at row 0 after the clamp: finite, then masked out below.
    source_index = (batch.source_index - first_kept).clamp(min=0)
    per_token_logps = token_logps(logits, batch.input_ids, source_index)  # (B, T)
    return PairLogps(
        chosen_logps=(per_token_logps * batch.chosen_mask).sum(dim=-1),
        rejected_logps=(per_token_logps * batch.rejected_mask).sum(dim=-1),
        chosen_n_tokens=batch.chosen_lens.to(per_token_logps.dtype),
        rejected_n_tokens=batch.rejected_lens.to(per_token_logps.dtype),
    )


def _unshared_rows(batch: PackedPairBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rebuild [prefix+chosen; prefix+rejected] as (2B, T') ids, 2D padding mask and loss mask."""
    rows, step_lens = [], []
    for b in range(batch.input_ids.shape[0]):
        p, c, r = (int(x[b]) for x in (batch.prefix_lens, batch.chosen_lens, batch.rejected_lens))
        packed = batch.input_ids[b]
        rows.append(torch.cat([packed[:p], packed[p : p + c]]))
        step_lens.append(c)
        rows.append(torch.cat([packed[:p], packed[p + c : p + c + r]]))
        step_lens.append(r)
    seq_len = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), seq_len), batch.pad_id, dtype=torch.long, device=packed.device)
    padding_mask = torch.zeros_like(input_ids)
    loss_mask = torch.zeros_like(input_ids)
    for i, (row, step_len) in enumerate(zip(rows, step_lens)):
        input_ids[i, : len(row)] = row
        padding_mask[i, : len(row)] = 1
        loss_mask[i, len(row) - step_len : len(row)] = 1
    return input_ids, padding_mask, loss_mask


def unshared_pair_logps(model: torch.nn.Module, batch: PackedPairBatch) -> PairLogps:
    """Reference: the same log-probs from two ordinary sequences per pair (prefix+chosen and
    prefix+rejected, right-padded, one forward over 2B rows), as TRL-style DPO computes them.
    Used as the oracle in tests and as the baseline in the benchmark."""
    input_ids, padding_mask, loss_mask = _unshared_rows(batch)
    first_kept = int(batch.prefix_lens.min()) - 1  # same lm_head saving as the packed path
    logits = model(
        input_ids=input_ids,
        attention_mask=padding_mask,
        use_cache=False,
        logits_to_keep=input_ids.shape[1] - first_kept,
    ).logits
    sum_logps, n_tokens = sequence_logps(logits, input_ids[:, first_kept:], loss_mask[:, first_kept:])
    return PairLogps(
        chosen_logps=sum_logps[0::2],
        rejected_logps=sum_logps[1::2],
        chosen_n_tokens=n_tokens[0::2],
        rejected_n_tokens=n_tokens[1::2],
    )
