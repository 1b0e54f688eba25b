"""The vLLM backend for GPU clusters (``sample.engine=vllm``; ``pip install 'sppd[gpu]'``).

Same protocol as the transformers engine: token-id prefixes in, steps out. vLLM's automatic
prefix caching suits the tree well: every expansion re-sends the whole path, and the shared
prefix's KV cache is reused instead of recomputed. Log-probs are vLLM's raw (unprocessed)
log-probs of the sampled tokens, matching pi_ref in the selection score.

Two things differ from a plain ``llm.generate`` call, both so that this engine gives the steps the
transformers engine gives:

* Each of the ``n`` samples of each prefix is its own request with its own seed
  (:func:`request_seed`). One shared seed would make sample j of every prefix draw from the same
  random stream (vLLM seeds a request's j-th sample from its seed and j).
* vLLM stops at the first occurrence of the delimiter, even at the very start of a step; the
  step rule (``sppd.sampling.engine.lead_length``) keeps such a leading delimiter in the step. A
  request that stopped with only its lead is sent again with the lead appended to its prompt (a
  prefix-cache hit) until the step has text or the token budget is spent (:func:`continue_after_lead`).

The pure functions are tested on the CPU; ``tests/gpu/test_vllm_engine.py`` checks the engine
against the transformers engine where a GPU and vLLM are present.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from collections.abc import Sequence

from sppd.sampling.engine import EngineStats, FinishReason, GenerationParams, StepSample, decode_step

INSTALL_HINT = "config key 'sample.engine' is vllm, but vLLM is not installed: pip install 'sppd[gpu]' (or use hf)"


def require_vllm() -> None:
    """Fail with a one-line install hint when vLLM is missing (call before loading any model)."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(INSTALL_HINT)


def request_seed(seed: int, prompt: int, sample: int, attempt: int = 0) -> int:
    """The seed of sample ``sample`` of prompt ``prompt`` in a call seeded ``seed`` (63 bits).

    A hash, so siblings and cousins get unrelated streams, and the same inputs give the same seed
    in every run and on every machine (Python's ``hash`` is salted per process).
    """
    digest = hashlib.blake2b(f"{seed}/{prompt}/{sample}/{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def finish_reason_of(finish_reason: str | None, stop_reason, stop: str | None) -> FinishReason:
    """vLLM's ``finish_reason``/``stop_reason`` of a completion as a ``FinishReason``."""
    if finish_reason == "length":
        return FinishReason.LENGTH
    if stop is not None and stop_reason == stop:
        return FinishReason.DELIMITER
    return FinishReason.EOS  # the EOS token or one of the extra end-of-turn stop_token_ids


def continue_after_lead(sample: StepSample, budget: int) -> bool:
    """Whether a step vLLM stopped at a delimiter is only the step's lead (whitespace and
    delimiters: its text is empty) and must go on, since under the step rule that delimiter did not
    end the step; not once ``budget`` tokens are spent."""
    return sample.finish_reason == FinishReason.DELIMITER and not sample.text and len(sample.token_ids) < budget


class VLLMEngine:
    """Engine over ``vllm.LLM``; build it from a model folder or pass an existing ``LLM``."""

    def __init__(
        self,
        model=None,
        tokenizer=None,
        batch_size: int = 0,
        llm=None,
        model_path: str | None = None,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float = 0.85,
        extra_eos_ids: Sequence[int] = (),
        **llm_kwargs,
    ):
        if llm is None:
            require_vllm()
            from vllm import LLM

            path = model_path or getattr(getattr(model, "config", None), "_name_or_path", None)
            if not path:
                raise ValueError("VLLMEngine needs model_path (a local HF folder) or an LLM instance")
            llm = LLM(
                model=str(path),
                dtype=dtype,
                enable_prefix_caching=True,
                gpu_memory_utilization=gpu_memory_utilization,
                **llm_kwargs,
            )
        self.llm = llm
        self.tokenizer = tokenizer or llm.get_tokenizer()
        self.extra_eos_ids = sorted({int(i) for i in extra_eos_ids})
        eos = self.tokenizer.eos_token_id
        self.eos_ids = set(self.extra_eos_ids) | ({int(eos)} if eos is not None else set())
        self.stats = EngineStats()

    def generate(
        self, prefixes: list[list[int]], n: int, params: GenerationParams, seed: int
    ) -> list[list[StepSample]]:
        start = time.perf_counter()
        pending = [(i, j) for i in range(len(prefixes)) for j in range(n)]
        ids: dict[tuple[int, int], list[int]] = {key: [] for key in pending}
        logps: dict[tuple[int, int], list[float]] = {key: [] for key in pending}
        results: list[list[StepSample | None]] = [[None] * n for _ in prefixes]
        attempt = 0
        while pending:
            outputs = self._request(prefixes, pending, ids, params, seed, attempt)
            still = []
            for key, out in zip(pending, outputs):
                completion = out.outputs[0]
                ids[key] += list(completion.token_ids)
                logps[key] += _token_logps(completion)
                reason = finish_reason_of(completion.finish_reason, completion.stop_reason, params.stop)
                sample = decode_step(self.tokenizer, ids[key], logps[key], reason, params.stop, self.eos_ids)
                if continue_after_lead(sample, params.max_new_tokens):
                    still.append(key)
                else:
                    results[key[0]][key[1]] = sample
            pending, attempt = still, attempt + 1
        self.stats.calls += 1
        self.stats.sequences += len(prefixes) * n
        self.stats.prompt_tokens += sum(len(p) for p in prefixes)
        self.stats.generated_tokens += sum(len(s.token_ids) for group in results for s in group)
        self.stats.seconds += time.perf_counter() - start
        return results

    def _request(self, prefixes, keys, ids, params: GenerationParams, seed: int, attempt: int):
        """One ``llm.generate`` call: one single-sample request per (prefix, sample) key."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, sampling = [], []
        for i, j in keys:
            prompts.append(TokensPrompt(prompt_token_ids=list(prefixes[i]) + ids[(i, j)]))
            sampling.append(
                SamplingParams(
                    n=1,
                    temperature=0.0 if params.greedy else params.temperature,
                    top_p=params.top_p,
                    max_tokens=params.max_new_tokens - len(ids[(i, j)]),
                    stop=[params.stop] if params.stop else None,
                    stop_token_ids=self.extra_eos_ids or None,
                    include_stop_str_in_output=True,
                    logprobs=0,
                    seed=request_seed(seed, i, j, attempt),
                )
            )
        return self.llm.generate(prompts, sampling, use_tqdm=False)


def _token_logps(completion) -> list[float]:
    """Log-probs of a completion's sampled tokens (0 where vLLM returned none)."""
    ids = list(completion.token_ids)
    if not completion.logprobs:
        return [0.0] * len(ids)
    return [float(completion.logprobs[i][t].logprob) for i, t in enumerate(ids)]
