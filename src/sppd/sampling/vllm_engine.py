"""The vLLM backend for GPU clusters (``sample.engine=vllm``; ``pip install 'sppd[gpu]'``).

Same protocol as the transformers engine: token-id prefixes in, steps out. vLLM's automatic
prefix caching suits the tree well: every expansion re-sends the whole path, and the shared
prefix's KV cache is reused instead of recomputed. Log-probs are vLLM's raw (unprocessed)
log-probs of the sampled tokens, matching pi_ref in the selection score.

Not exercised by the CPU test suite (vLLM needs a GPU); ``tests/gpu/test_vllm_engine.py``
checks it against the transformers engine where a GPU and vLLM are present.
"""

from __future__ import annotations

import time

from sppd.sampling.engine import EngineStats, FinishReason, GenerationParams, StepSample


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
        **llm_kwargs,
    ):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise ImportError("the vllm engine needs vLLM: pip install 'sppd[gpu]'") from exc
        if llm is None:
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
        self.stats = EngineStats()

    def generate(
        self, prefixes: list[list[int]], n: int, params: GenerationParams, seed: int
    ) -> list[list[StepSample]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        start = time.perf_counter()
        sampling = SamplingParams(
            n=n,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=[params.stop] if params.stop else None,
            include_stop_str_in_output=True,
            logprobs=0,
            seed=seed,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prefixes], sampling, use_tqdm=False
        )
        results = [[self._to_sample(c, params.stop) for c in out.outputs] for out in outputs]
        self.stats.calls += 1
        self.stats.sequences += len(prefixes) * n
        self.stats.prompt_tokens += sum(len(p) for p in prefixes)
        self.stats.generated_tokens += sum(len(s.token_ids) for group in results for s in group)
        self.stats.seconds += time.perf_counter() - start
        return results

    @staticmethod
    def _to_sample(completion, stop: str | None) -> StepSample:
        ids = list(completion.token_ids)
        logps = (
            [float(completion.logprobs[i][t].logprob) for i, t in enumerate(ids)]
            if completion.logprobs
            else [0.0] * len(ids)
        )
        if completion.finish_reason == "length":
            reason = FinishReason.LENGTH
        elif stop is not None and completion.stop_reason == stop:
            reason = FinishReason.DELIMITER
        else:
            reason = FinishReason.EOS
        text = completion.text
        if reason == FinishReason.DELIMITER and stop:
            cut = text.find(stop, len(text) - len(text.lstrip()))
            text = text[:cut] if cut >= 0 else text
        return StepSample(token_ids=ids, token_logps=logps, text=text.strip(), finish_reason=reason)
