"""The transformers backend: batched sampling with a KV cache that stops at a step delimiter.

Written as an explicit decode loop rather than ``model.generate`` because the tree needs, per
row, the exact token log-probs under the untempered model, a stop at the first token that
completes the step delimiter (not a whole solution cut afterwards), and reproducible sampling
from one seeded generator. Each distinct prefix is prefilled once and its cache repeated for
its ``n`` samples; finished rows are dropped from the batch so long steps don't pay for short
ones. The prefill's cache is converted to ``sppd.sampling.kv_cache.GrowingLayer``s (doubling
buffers instead of a ``torch.cat`` per token; same samples, ~30% less time on CPU). Runs on CPU
and CUDA.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import torch

from sppd.sampling.engine import (
    EngineStats,
    FinishReason,
    GenerationParams,
    StepSample,
    decode_step,
    find_step_end,
)
from sppd.sampling.kv_cache import grow_in_place


class HFEngine:
    """Engine over a ``transformers`` causal LM and its tokenizer."""

    def __init__(
        self, model, tokenizer, batch_size: int = 256, prune_below: float = 0.5, extra_eos_ids: Sequence[int] = ()
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.prune_below = prune_below
        self.stats = EngineStats()
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = _eos_ids(model, tokenizer) | {int(i) for i in extra_eos_ids}
        self._piece_cache: dict[int, str] = {}
        # transformers >= 5.2x renamed the cache argument; accept both spellings.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # The prefill only needs the last position's logits; all of them would be (rows, prefix, vocab):
        # ~100 GiB of bf16 at 512 rows x 1,500 tokens x 150k vocab. Older versions spell it
        # num_logits_to_keep; a model that accepts neither gets full logits (correct, just larger).
        keep = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._prefill_kw = {keep: 1} if keep else {}

    def generate(
        self, prefixes: list[list[int]], n: int, params: GenerationParams, seed: int
    ) -> list[list[StepSample]]:
        """``n`` samples per prefix; see ``sppd.sampling.engine.Engine.generate``."""
        start = time.perf_counter()
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        results: list[list[StepSample]] = [[] for _ in prefixes]
        order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))  # less padding
        per_call = max(1, self.batch_size // max(n, 1))
        for lo in range(0, len(order), per_call):
            idx = order[lo : lo + per_call]
            samples = self._generate_batch([prefixes[i] for i in idx], n, params, gen)
            for k, i in enumerate(idx):
                results[i] = samples[k * n : (k + 1) * n]
        self.stats.seconds += time.perf_counter() - start
        return results

    @torch.no_grad()
    def _generate_batch(self, prefixes, n, params: GenerationParams, gen) -> list[StepSample]:
        ids, attn = _left_pad(prefixes, self.pad_id, self.device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **self._prefill_kw)
        cache = grow_in_place(_output_cache(out))
        logits = out.logits[:, -1, :].float()
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, 0)
            attn = attn.repeat_interleave(n, 0)
            pos = pos.repeat_interleave(n, 0)
        rows = logits.shape[0]
        self.stats.calls += 1
        self.stats.sequences += rows
        self.stats.prompt_tokens += int(sum(len(p) for p in prefixes))
        state = _RowState(rows)
        active = torch.arange(rows, device=self.device)  # original row of each batch position
        next_pos = pos[:, -1] + 1
        for _ in range(params.max_new_tokens):
            tokens, logps = _sample(logits, params, gen)
            done_now = self._record(state, active.tolist(), tokens.tolist(), logps.tolist(), params.stop)
            if state.all_done():
                break
            keep = torch.tensor([not d for d in done_now], device=self.device)
            if keep.sum().item() < self.prune_below * len(done_now):
                sel = keep.nonzero().squeeze(-1)
                cache.batch_select_indices(sel)
                active, tokens, attn, next_pos = active[sel], tokens[sel], attn[sel], next_pos[sel]
            feed = tokens.clone()
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            out = self.model(
                input_ids=feed[:, None],
                attention_mask=attn,
                position_ids=next_pos[:, None],
                use_cache=True,
                **{self._cache_kw: cache},
            )
            cache, logits = _output_cache(out), out.logits[:, -1, :].float()
            next_pos = next_pos + 1
        return [self._finish(state, r, params.stop) for r in range(rows)]

    def _record(self, state: _RowState, rows, tokens, logps, stop) -> list[bool]:
        """Append one token to each live row; returns, per batch position, whether it is done."""
        done_now = []
        for row, tok, lp in zip(rows, tokens, logps):
            if state.reason[row] is not None:
                done_now.append(True)
                continue
            state.ids[row].append(tok)
            state.logps[row].append(lp)
            self.stats.generated_tokens += 1
            if tok in self.eos_ids:
                state.reason[row] = FinishReason.EOS
            elif stop is not None:
                # the whole step's text so far (steps are short): the step rule needs its lead
                state.text[row] += self._piece(tok)
                if find_step_end(state.text[row], stop) >= 0:
                    state.reason[row] = FinishReason.DELIMITER
            done_now.append(state.reason[row] is not None)
        return done_now

    def _finish(self, state: _RowState, row: int, stop: str | None) -> StepSample:
        reason = state.reason[row] or FinishReason.LENGTH
        return decode_step(self.tokenizer, state.ids[row], state.logps[row], reason, stop, self.eos_ids)

    def _piece(self, tok: int) -> str:
        piece = self._piece_cache.get(tok)
        if piece is None:
            piece = self.tokenizer.decode([tok], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            self._piece_cache[tok] = piece
        return piece


class _RowState:
    """Per-row generation state of one batch (plain lists: touched once per token)."""

    def __init__(self, rows: int):
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.logps: list[list[float]] = [[] for _ in range(rows)]
        self.text = [""] * rows
        self.reason: list[FinishReason | None] = [None] * rows

    def all_done(self) -> bool:
        return all(r is not None for r in self.reason)


def _sample(logits: torch.Tensor, params: GenerationParams, gen: torch.Generator):
    """Next tokens (R,) and their log-probs under the untempered model (R,)."""
    logps_full = torch.log_softmax(logits, dim=-1)
    if params.greedy or params.temperature <= 0:
        tokens = logits.argmax(-1)
    else:
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            probs = _top_p(probs, params.top_p)
        tokens = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    return tokens, logps_full.gather(-1, tokens[:, None]).squeeze(-1)


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero the tail outside the smallest set whose mass reaches ``top_p`` (R, V)."""
    sorted_p, order = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(-1)
    drop = cum - sorted_p > top_p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, sorted_p)


def _output_cache(out):
    """The KV cache of a forward output (``cache`` in transformers >= 5.2x, else ``past_key_values``)."""
    cache = getattr(out, "cache", None) if "cache" in out else None
    return cache if cache is not None else out.past_key_values


def _left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        attn[i, width - len(s) :] = 1
    return ids.to(device), attn.to(device)


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        ids.update(int(i) for i in gen_eos)
    return ids
