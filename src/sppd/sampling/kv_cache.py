"""A KV-cache layer that grows by doubling instead of concatenating every decoded token.

``transformers``' ``DynamicLayer`` appends each new token with ``torch.cat``, which copies the
whole cache per layer per token: quadratic in the length. On CPU, for the toy policy's whole-
solution decoding (400 problems x 9 sequences, up to 200 tokens), those copies were 35% of the
evaluation's time (cProfile: 16.4 of 47 s). ``GrowingLayer`` keeps a buffer with room to spare
(doubled when full) and hands attention a view of its filled part, so each token writes only its
own keys and values. The values attention sees are the same tensors, so samples are bitwise
identical (tests/sampling/test_kv_cache.py; benchmarks/bench_kv_cache.py measures the speed-up).

``grow_in_place`` converts the layers of a plain ``DynamicCache`` after the prefill; any other
cache (sliding-window, static, quantised, offloaded, a model's own) is left exactly as it was.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

MIN_CAPACITY = 16


class GrowingLayer(DynamicLayer):
    """``DynamicLayer`` whose ``keys``/``values`` are views of a buffer grown by doubling."""

    _kbuf: torch.Tensor
    _vbuf: torch.Tensor
    _len: int

    def adopt(self) -> None:
        """Move the layer's current keys/values into a buffer with room for as many again."""
        self._len = self.keys.shape[-2]
        self._kbuf, self._vbuf = _resized(self.keys, self._len), _resized(self.values, self._len)
        self._publish()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        need = self._len + key_states.shape[-2]
        if need > self._kbuf.shape[-2]:
            self._kbuf = _resized(self._kbuf[..., : self._len, :], need)
            self._vbuf = _resized(self._vbuf[..., : self._len, :], need)
        self._kbuf[..., self._len : need, :] = key_states
        self._vbuf[..., self._len : need, :] = value_states
        self._len = need
        self._publish()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._kbuf, self._vbuf = self._kbuf[indices, ...], self._vbuf[indices, ...]
        self._publish()

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._kbuf = self._kbuf.repeat_interleave(repeats, dim=0)
        self._vbuf = self._vbuf.repeat_interleave(repeats, dim=0)
        self._publish()

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)  # validates the argument and trims the views
        self._len = self.keys.shape[-2]

    def _publish(self) -> None:
        self.keys, self.values = self._kbuf[..., : self._len, :], self._vbuf[..., : self._len, :]


def _resized(filled: torch.Tensor, need: int) -> torch.Tensor:
    """A new buffer holding ``filled`` with capacity for at least ``need`` positions (doubled)."""
    cap = max(MIN_CAPACITY, 2 * need)
    buf = filled.new_empty((*filled.shape[:-2], cap, filled.shape[-1]))
    buf[..., : filled.shape[-2], :] = filled
    return buf


def grow_in_place(cache):
    """Turn a plain ``DynamicCache``'s filled layers into ``GrowingLayer``s; return the cache.

    Anything else (another cache class, sliding-window or offloaded layers, already converted
    layers) is returned untouched, so calling it after every forward is safe and cheap.
    """
    if type(cache) is not DynamicCache or getattr(cache, "offloading", False):
        return cache
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return cache
    if not all(layer.is_initialized and layer.keys.dim() == 4 for layer in layers):
        return cache
    for layer in layers:
        layer.__class__ = GrowingLayer  # same fields, different update: no copy of the prefill's keys
        layer.adopt()
    return cache
