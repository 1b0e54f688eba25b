"""Step-pair log-probs with the shared prefix computed once: [prefix][chosen][rejected] per row.

A step pair (§4.1) has a long prefix (question + earlier steps) and two short sibling steps. The
usual DPO batch runs the prefix twice (prefix+chosen, prefix+rejected). Here each pair is one row
of ``P + C + R`` tokens with a custom attention mask:

* prefix tokens attend causally among themselves;
* chosen tokens attend to the prefix and causally to earlier chosen tokens;
* rejected tokens attend to the prefix and causally to earlier rejected tokens, never to chosen;
* position ids of the rejected span restart at ``P`` (as if it followed the prefix directly).

So every rejected token sees exactly the keys, values and rotary positions it would see in the
unshared sequence, and the log-probs agree up to float rounding. The first token of each step is
predicted by the logits of the LAST PREFIX token (row ``P - 1``), not by the token just before it
in the packed row; :attr:`PackedPairBatch.source_index` records the predicting row of every token.

Attention-backend constraint (checked against transformers 5.24 ``masking_utils`` and
``modeling_llama``/``modeling_qwen2``): a 4D ``attention_mask`` is passed to the attention
function unchanged (``_preprocess_mask_arguments`` returns it as-is). ``eager`` attention ADDS it
to the scores, so a bool mask would be wrong there; ``sdpa`` accepts bool or additive float. We
therefore pass an additive float mask in the model's dtype (0 = attend, ``finfo.min`` = blocked),
which both backends treat identically. Flash-attention and flex backends ignore or reject dense
4D masks and are refused. Sliding-window layers (Qwen2 ``use_sliding_window``) receive the same
dense mask, i.e. no window is applied; fine while sequences are shorter than the window.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from sppd.losses import sequence_logps, token_logps

SUPPORTED_ATTENTION = ("eager", "sdpa")

# Segment ids inside a packed row; padding is -1.
_PAD, _PREFIX, _CHOSEN, _REJECTED = -1, 0, 1, 2


@dataclass(frozen=True)
class PackedPairBatch:
    """A right-padded batch of packed step pairs. Row ``b`` is prefix, chosen, rejected, padding.

    Tensors (``T`` = longest ``P + C + R`` in the batch):
        input_ids: (B, T) token ids, ``pad_id`` after the rejected span.
        attention_mask_4d: (B, 1, T, T) bool, True where query ``q`` may attend key ``k``. Padding
            rows attend only to themselves so no softmax row is empty.
        position_ids: (B, T) 0..P+C-1 over prefix and chosen, P..P+R-1 over rejected, 0 on padding.
        source_index: (B, T) row of the logits that predicts token ``t`` (P - 1 for the first token
            of either step); 0 where the token is not scored.
        chosen_mask, rejected_mask: (B, T) bool, True on the tokens of each step.
        prefix_lens, chosen_lens, rejected_lens: (B,) span lengths.
    """

    input_ids: torch.Tensor
    attention_mask_4d: torch.Tensor
    position_ids: torch.Tensor
    source_index: torch.Tensor
    chosen_mask: torch.Tensor
    rejected_mask: torch.Tensor
    prefix_lens: torch.Tensor
    chosen_lens: torch.Tensor
    rejected_lens: torch.Tensor
    pad_id: int

    def to(self, device: torch.device | str) -> PackedPairBatch:
        """Copy of the batch with every tensor on ``device``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return PackedPairBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in values.items()})

    @property
    def unshared_token_count(self) -> int:
        """Tokens an unshared implementation processes: (P + C) + (P + R) per pair, no padding."""
        return int((2 * self.prefix_lens + self.chosen_lens + self.rejected_lens).sum())


@dataclass(frozen=True)
class PairLogps:
    """Summed log-probs of each pair's two steps given the prefix (all fields (B,))."""

    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    chosen_n_tokens: torch.Tensor
    rejected_n_tokens: torch.Tensor


def _segment_row(prefix_len: int, chosen_len: int, rejected_len: int, seq_len: int) -> torch.Tensor:
    """(T,) segment id of every position of one packed row."""
    segments = torch.full((seq_len,), _PAD, dtype=torch.long)
    segments[:prefix_len] = _PREFIX
    segments[prefix_len : prefix_len + chosen_len] = _CHOSEN
    segments[prefix_len + chosen_len : prefix_len + chosen_len + rejected_len] = _REJECTED
    return segments


def _allowed_attention(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) segment ids -> (B, 1, T, T) bool mask: causal, prefix shared, steps isolated."""
    seq_len = segments.shape[1]
    positions = torch.arange(seq_len)
    causal = positions[None, :, None] >= positions[None, None, :]  # (1, Tq, Tk): k <= q
    seg_q, seg_k = segments[:, :, None], segments[:, None, :]
    same_or_prefix = (seg_k == _PREFIX) | (seg_k == seg_q)
    allowed = causal & same_or_prefix & (seg_q != _PAD) & (seg_k != _PAD)
    # Padding queries see themselves: an all-blocked row is harmless with finfo.min but a NaN
    # source with -inf masks, and these rows are never scored anyway.
    allowed |= torch.eye(seq_len, dtype=torch.bool)[None] & (seg_q == _PAD)
    return allowed[:, None]


def pack_pairs(
    prefix_ids: list[list[int]],
    chosen_ids: list[list[int]],
    rejected_ids: list[list[int]],
    pad_id: int,
) -> PackedPairBatch:
    """Collate step pairs into one right-padded packed row each (see the module docstring).

    Prefixes and steps must be non-empty: the prefix's last token is what predicts each step's
    first token. No EOS is added; the caller decides whether a step ends the solution.
    """
    if not len(prefix_ids) == len(chosen_ids) == len(rejected_ids) > 0:
        raise ValueError("prefix_ids, chosen_ids and rejected_ids must be equally long and non-empty")
    lens = [(len(p), len(c), len(r)) for p, c, r in zip(prefix_ids, chosen_ids, rejected_ids)]
    if any(min(triple) == 0 for triple in lens):
        raise ValueError("every prefix, chosen step and rejected step needs at least one token")
    seq_len = max(p + c + r for p, c, r in lens)
    batch_size = len(lens)
    input_ids = torch.full((batch_size, seq_len), pad_id, dtype=torch.long)
    position_ids = torch.zeros((batch_size, seq_len), dtype=torch.long)
    source_index = torch.zeros((batch_size, seq_len), dtype=torch.long)
    segments = torch.empty((batch_size, seq_len), dtype=torch.long)
    for b, (p, c, r) in enumerate(lens):
        row = prefix_ids[b] + chosen_ids[b] + rejected_ids[b]
        input_ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        position_ids[b, : p + c] = torch.arange(p + c)
        position_ids[b, p + c : p + c + r] = torch.arange(p, p + r)  # restart after the prefix
        # Chosen token j (at p + j) is predicted by row p + j - 1, i.e. p - 1 for j = 0.
        source_index[b, p : p + c] = torch.arange(p - 1, p + c - 1)
        # Rejected token j (at p + c + j): row p - 1 for j = 0, else the previous rejected row.
        source_index[b, p + c] = p - 1
        source_index[b, p + c + 1 : p + c + r] = torch.arange(p + c, p + c + r - 1)
        segments[b] = _segment_row(p, c, r, seq_len)
    return PackedPairBatch(
        input_ids=input_ids,
        attention_mask_4d=_allowed_attention(segments),
        position_ids=position_ids,
        source_index=source_index,
        chosen_mask=segments == _CHOSEN,
        rejected_mask=segments == _REJECTED,
        prefix_lens=torch.tensor([p for p, _, _ in lens]),
        chosen_lens=torch.tensor([c for _, c, _ in lens]),
        rejected_lens=torch.tensor([r for _, _, r in lens]),
        pad_id=pad_id,
    )


def additive_attention_mask(allowed_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, T, T) bool -> additive float mask: 0 where allowed, ``finfo(dtype).min`` elsewhere.

    ``finfo.min`` (what transformers' own eager masks use) rather than ``-inf``: a fully blocked
    row then softmaxes to uniform instead of NaN. :func:`pack_pairs` leaves no such row anyway.
    The mask costs ``B * T * T`` elements, fine for step pairs of a few thousand tokens.
    """
    additive = torch.zeros(allowed_mask.shape, dtype=dtype, device=allowed_mask.device)
    return additive.masked_fill(~allowed_mask, torch.finfo(dtype).min)


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
