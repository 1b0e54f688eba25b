"""Prefix-shared step-pair log-probs equal the two-sequence computation (values and gradients).

Tiny random Llama and Qwen2 models, fp32, for both eager and sdpa attention. The models use a
larger init (0.2) than the HF default (0.02) so outputs depend strongly on context; the
negative-control tests show that each ingredient (mask, positions, predicting row) moves the
log-probs by far more than the 1e-5 tolerance, so the equality tests can fail.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from sppd.packing import PackedPairBatch, pack_pairs
from sppd.train.prefix_sharing import packed_pair_logps, unshared_pair_logps

ARCHS = ("llama", "qwen2")
ATTENTIONS = ("eager", "sdpa")
PAD_ID = 0


def tiny_model(arch: str, attn_implementation: str) -> torch.nn.Module:
    """~30k-parameter causal LM, random init, fp32, eval mode (no dropout)."""
    torch.manual_seed(0)
    common = dict(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in real Llama 3 / Qwen2 models
        max_position_embeddings=128,
        initializer_range=0.2,
        attn_implementation=attn_implementation,
    )
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    model_cls = LlamaForCausalLM if arch == "llama" else Qwen2ForCausalLM
    return model_cls(config).to(torch.float32).eval()


def example_batch() -> PackedPairBatch:
    """Pairs with different prefix/chosen/rejected lengths, length-1 steps and padding."""
    g = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 40, (n,), generator=g).tolist()

    shapes = [(7, 3, 1), (2, 1, 5), (5, 4, 4), (1, 2, 3), (9, 1, 1)]  # (P, C, R) per pair
    return pack_pairs(
        [ids(p) for p, _, _ in shapes],
        [ids(c) for _, c, _ in shapes],
        [ids(r) for _, _, r in shapes],
        pad_id=PAD_ID,
    )


def test_pack_pairs_layout_by_hand():
    batch = pack_pairs([[5, 6], [7]], [[8, 9], [10]], [[11], [12, 13]], pad_id=0)
    # Row 0: P=2, C=2, R=1 -> [5 6 | 8 9 | 11], length 5 (the batch length).
    # Row 1: P=1, C=1, R=2 -> [7 | 10 | 12 13 | pad].
    assert batch.input_ids.tolist() == [[5, 6, 8, 9, 11], [7, 10, 12, 13, 0]]
    # Rejected positions restart at P: row 0 rejected at 2 (not 4); row 1 at 1, 2.
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    # Predicting rows: chosen 8<-1, 9<-2; rejected 11<-1 (last prefix row, not the last chosen row 3).
    # Row 1: chosen 10<-0; rejected 12<-0, 13<-2.
    assert batch.source_index.tolist() == [[0, 0, 1, 2, 1], [0, 0, 0, 2, 0]]
    assert batch.chosen_mask.int().tolist() == [[0, 0, 1, 1, 0], [0, 1, 0, 0, 0]]
    assert batch.rejected_mask.int().tolist() == [[0, 0, 0, 0, 1], [0, 0, 1, 1, 0]]
    # Row 1 mask (q rows, k columns): prefix 0, chosen 1, rejected 2-3, pad 4 (sees only itself).
    assert batch.attention_mask_4d[1, 0].int().tolist() == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [1, 0, 1, 1, 0],
        [0, 0, 0, 0, 1],
    ]
    # Unshared count: (2+2)+(2+1) + (1+1)+(1+2) = 7 + 5 = 12.
    assert batch.unshared_token_count == 12


def test_pack_pairs_rejects_empty_spans():
    with pytest.raises(ValueError, match="at least one token"):
        pack_pairs([[1, 2]], [[]], [[3]], pad_id=0)
    with pytest.raises(ValueError, match="at least one token"):
        pack_pairs([[]], [[1]], [[3]], pad_id=0)


@pytest.mark.parametrize("attn", ATTENTIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_packed_logps_equal_unshared(arch, attn):
    model = tiny_model(arch, attn)
    batch = example_batch()
    with torch.no_grad():
        packed = packed_pair_logps(model, batch)
        unshared = unshared_pair_logps(model, batch)
    torch.testing.assert_close(packed.chosen_logps, unshared.chosen_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed.rejected_logps, unshared.rejected_logps, atol=1e-5, rtol=0)
    assert packed.chosen_n_tokens.tolist() == [3, 1, 4, 2, 1] == unshared.chosen_n_tokens.tolist()
    assert packed.rejected_n_tokens.tolist() == [1, 5, 4, 3, 1] == unshared.rejected_n_tokens.tolist()
    # Several tokens each, far from zero: the comparison is not between two near-zero numbers.
    assert (unshared.rejected_logps < -1.0).all()


@pytest.mark.parametrize("attn", ATTENTIONS)
@pytest.mark.parametrize("arch", ARCHS)
def test_packed_gradients_equal_unshared(arch, attn):
    model = tiny_model(arch, attn)
    batch = example_batch()

    def grads(compute) -> list[torch.Tensor]:
        model.zero_grad()
        out = compute(model, batch)
        # Unequal weights so a chosen/rejected swap would show up in the gradients.
        (out.chosen_logps.sum() - 0.5 * out.rejected_logps.sum()).backward()
        return [p.grad.clone() for p in model.parameters()]

    packed_grads, unshared_grads = grads(packed_pair_logps), grads(unshared_pair_logps)
    assert any(g.abs().max() > 1e-3 for g in packed_grads)
    for g_packed, g_unshared in zip(packed_grads, unshared_grads, strict=True):
        torch.testing.assert_close(g_packed, g_unshared, atol=1e-5, rtol=1e-4)


def _mutated(batch: PackedPairBatch, what: str) -> PackedPairBatch:
    """A deliberately wrong variant of the batch, one ingredient at a time."""
    mask, positions, sources = (
        batch.attention_mask_4d.clone(),
        batch.position_ids.clone(),
        batch.source_index.clone(),
    )
    for b in range(batch.input_ids.shape[0]):
        p, c, r = (int(x[b]) for x in (batch.prefix_lens, batch.chosen_lens, batch.rejected_lens))
        if what == "rejected_sees_chosen":
            mask[b, 0, p + c : p + c + r, p : p + c] = True
        elif what == "positions_continue":
            positions[b, p + c : p + c + r] = torch.arange(p + c, p + c + r)
        elif what == "first_rejected_from_last_chosen":
            sources[b, p + c] = p + c - 1
    return dataclasses.replace(batch, attention_mask_4d=mask, position_ids=positions, source_index=sources)


MUTATIONS = ("rejected_sees_chosen", "positions_continue", "first_rejected_from_last_chosen")


@pytest.mark.parametrize("what", MUTATIONS)
def test_negative_controls_change_rejected_logps(what):
    model = tiny_model("llama", "sdpa")
    batch = example_batch()
    with torch.no_grad():
        reference = unshared_pair_logps(model, batch).rejected_logps
        wrong = packed_pair_logps(model, _mutated(batch, what)).rejected_logps
    assert (wrong - reference).abs().max() > 1e-2


def test_unsupported_attention_is_refused():
    model = tiny_model("llama", "eager")
    model.config._attn_implementation = "flash_attention_2"  # only the check is exercised
    with pytest.raises(ValueError, match="attn_implementation"):
        packed_pair_logps(model, example_batch())


class _Wrapper(torch.nn.Module):
    """Stands in for DDP / DeepSpeed: the HF model (and its config) live under `.module`."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, **kwargs):
        return self.module(**kwargs)


def test_wrapped_model_is_accepted():
    model = tiny_model("qwen2", "sdpa")
    batch = example_batch()
    with torch.no_grad():
        wrapped = packed_pair_logps(_Wrapper(model), batch)
        bare = packed_pair_logps(model, batch)
    torch.testing.assert_close(wrapped.chosen_logps, bare.chosen_logps, atol=0, rtol=0)


@pytest.mark.parametrize("attn", ATTENTIONS)
def test_bf16_model_is_finite_and_close(attn):
    # bf16 rounding may differ between the two layouts (matmul shapes differ), so 1e-5 is not
    # promised; on this CPU they agree exactly.
    model = tiny_model("llama", attn).to(torch.bfloat16)
    batch = example_batch()
    with torch.no_grad():
        packed = packed_pair_logps(model, batch)
        unshared = unshared_pair_logps(model, batch)
    assert packed.chosen_logps.dtype == torch.float32
    assert torch.isfinite(packed.chosen_logps).all() and torch.isfinite(packed.rejected_logps).all()
    torch.testing.assert_close(packed.rejected_logps, unshared.rejected_logps, atol=0.05, rtol=0)
