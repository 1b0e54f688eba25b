"""The doubling KV cache (sppd.sampling.kv_cache) against transformers' concatenating one."""

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

import sppd.sampling.hf_engine as hf_engine
from sppd.sampling.engine import GenerationParams
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.kv_cache import GrowingLayer, grow_in_place

MIN_LEN = 16  # some sample must outgrow the first buffer, so a doubling happened mid-decode


def _kv(batch, length, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, length, 4, generator=g), torch.randn(batch, 2, length, 4, generator=g)


def test_growing_layer_holds_what_dynamic_layer_holds_through_every_operation():
    ref, ours = DynamicLayer(), DynamicLayer()
    ref.update(*_kv(3, 5, 0))
    ours.update(*_kv(3, 5, 0))
    cache = DynamicCache()
    cache.layers = [ours]
    assert grow_in_place(cache) is cache and type(ours) is GrowingLayer

    def same():
        assert ours.keys.shape == ref.keys.shape
        assert torch.equal(ours.keys, ref.keys) and torch.equal(ours.values, ref.values)

    same()
    ours.batch_repeat_interleave(2), ref.batch_repeat_interleave(2)
    same()
    for step in range(40):  # past the first capacity (2 x 5 = 10, MIN_CAPACITY 16) and a doubling
        kv = _kv(6 if step < 20 else 3, 1 if step % 7 else 3, 100 + step)
        got, want = ours.update(*kv), ref.update(*kv)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        if step == 19:
            sel = torch.tensor([0, 2, 5])
            ours.batch_select_indices(sel), ref.batch_select_indices(sel)
        same()
    assert ours.get_seq_length() == ref.get_seq_length() == 5 + sum(1 if s % 7 else 3 for s in range(40))
    ours.crop(-4), ref.crop(-4)
    same()
    kv = _kv(3, 1, 999)
    assert torch.equal(ours.update(*kv)[0], ref.update(*kv)[0])


def test_other_caches_are_left_alone():
    class Other(DynamicCache):
        pass

    other = Other()
    other.layers = [DynamicLayer()]
    other.layers[0].update(*_kv(1, 2, 0))
    assert grow_in_place(other) is other and type(other.layers[0]) is DynamicLayer
    empty = DynamicCache()
    empty.layers = [DynamicLayer()]  # not yet filled: nothing to adopt
    assert type(grow_in_place(empty).layers[0]) is DynamicLayer


def test_engine_samples_are_bitwise_the_same_with_and_without_it(tiny_policy, monkeypatch):
    model, tok = tiny_policy
    prefixes = [tok("Q: 1+2*3\n")["input_ids"], tok("Q: 9-4\nStep 1: ")["input_ids"]]
    params = GenerationParams(max_new_tokens=40, temperature=1.3)

    def run():
        groups = HFEngine(model, tok, batch_size=8).generate(prefixes, 4, params, seed=5)
        return [(s.token_ids, s.token_logps) for g in groups for s in g]

    converted = []
    real = hf_engine.grow_in_place
    monkeypatch.setattr(hf_engine, "grow_in_place", lambda c: converted.append(real(c)) or converted[-1])
    grown = run()
    assert converted and all(type(layer) is GrowingLayer for layer in converted[0].layers)
    monkeypatch.setattr(hf_engine, "grow_in_place", lambda c: c)
    assert grown == run()
    assert max(len(ids) for ids, _ in grown) > MIN_LEN
