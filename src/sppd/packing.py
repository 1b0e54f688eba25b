"""Packed rows with custom attention: step pairs sharing their prefix, and the additive 4D mask.

Pure tensor/list code shared by training (``sppd.train``, step pairs with ``train.prefix_sharing``)
and PRM tree packing (``sppd.prm.packing``, which builds its own tree-shaped mask and makes it
additive here).

A step pair (§4.1) has a long prefix (question + earlier steps) and two short sibling steps. The
usual DPO batch runs the prefix twice (prefix+chosen, prefix+rejected). :func:`pack_pairs` makes
each pair one row of ``P + C + R`` tokens with a custom attention mask:

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
