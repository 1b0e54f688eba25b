"""One step rule for both engines: a delimiter at the very start of a step does not end it.

Generation is forced on the tiny Qwen2 fixture (real model, real byte-level BPE tokenizer, where
``"\\n\\n"`` and ``" She"`` are single tokens as in Qwen2.5): a hook on ``lm_head`` makes the
model emit a scripted token sequence. vLLM cannot run here, so its engine runs against a stand-in
``vllm`` module that applies vLLM's stopping rules (stop at the first occurrence of the stop string
anywhere in the output, the stop string included in the text).
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from fixtures_qwen2 import build_qwen2
from sppd.sampling.engine import FinishReason, GenerationParams, find_step_end, lead_length, step_text
from sppd.sampling.hf_engine import HFEngine
from sppd.sampling.vllm_engine import VLLMEngine, continue_after_lead, request_seed

SCRIPT_TEXT = "\n\n She sold half.\n\nStep 2: 24"


@pytest.fixture(scope="module")
def qwen2():
    return build_qwen2()


def _script(tok) -> list[int]:
    ids = tok(SCRIPT_TEXT, add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids[:2]) == ["ĊĊ", "ĠShe"]  # the tokens of the bug report
    return ids


class _Forced:
    """Forces ``lm_head`` to emit ``script[k]`` at the k-th forward call (the prefill is call 0)."""

    def __init__(self, model, script):
        self.script, self.calls = script, 0
        self.handle = model.lm_head.register_forward_hook(self)

    def __call__(self, module, args, out):
        forced = torch.full_like(out, -1e4)
        forced[..., self.script[min(self.calls, len(self.script) - 1)]] = 0.0
        self.calls += 1
        return forced


def test_the_rule_as_pure_functions():
    assert lead_length("\n\nShe sold.\n\n", "\n\n") == 2
    assert find_step_end("\n\nShe sold.\n\nStep", "\n\n") == 11
    assert find_step_end("\n\n \n", "\n\n") == -1  # only a lead: the step has not ended
    assert step_text("\n\nShe sold.\n\nStep", "\n\n", FinishReason.DELIMITER) == "She sold."
    # a non-whitespace delimiter: leading ones are skipped too, the first one after text ends the step
    assert lead_length(" ки ки a ки", " ки") == 7
    assert step_text("ки x = 2 ки y", "ки", FinishReason.DELIMITER) == "x = 2"
    assert step_text("  x = 2", "ки", FinishReason.LENGTH) == "x = 2"


def test_hf_engine_keeps_a_leading_delimiter_in_the_step(qwen2):
    model, tok = qwen2
    script = _script(tok)
    engine = HFEngine(model, tok, batch_size=4)
    forced = _Forced(model, script)
    try:
        (group,) = engine.generate([tok("Q: 48 clips\n")["input_ids"]], 2, GenerationParams(20, stop="\n\n"), seed=0)
    finally:
        forced.handle.remove()
    end = 4  # ".\n\n" is one token, as in Qwen2.5's vocabulary: it ends the step
    assert tok.convert_ids_to_tokens(script[end]) == ".ĊĊ"
    for sample in group:
        assert sample.finish_reason == FinishReason.DELIMITER
        assert sample.text == "She sold half."
        assert sample.token_ids == script[: end + 1]


@dataclass
class _Completion:
    token_ids: list[int]
    logprobs: list[dict]
    finish_reason: str
    stop_reason: object
    text: str


@dataclass
class _Logprob:
    logprob: float


class _FakeLLM:
    """vLLM's stopping rules over a scripted continuation: the token at output position p of a
    prompt is ``script[len(prompt) - start + p]``, whatever was generated before."""

    def __init__(self, tok, script, start):
        self.tok, self.script, self.start, self.seeds = tok, script, start, []

    def generate(self, prompts, sampling, use_tqdm=False):
        outs = []
        for prompt, sp in zip(prompts, sampling):
            self.seeds.append(sp.seed)
            assert sp.n == 1
            done = len(prompt["prompt_token_ids"]) - self.start
            ids, finish, stop_reason = [], "length", None
            while len(ids) < sp.max_tokens:
                ids.append(self.script[done + len(ids)])
                text = self.tok.decode(ids)
                hit = next((s for s in sp.stop or [] if s in text), None)
                if hit is not None:
                    finish, stop_reason = "stop", hit
                    break
            logps = [{t: _Logprob(0.0)} for t in ids]
            outs.append(types.SimpleNamespace(outputs=[_Completion(ids, logps, finish, stop_reason, text)]))
        return outs


def _fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**kw)
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda **kw: dict(kw)
    vllm.inputs = inputs
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)


def test_vllm_engine_continues_after_a_leading_delimiter_like_the_hf_engine(qwen2, monkeypatch):
    _fake_vllm(monkeypatch)
    model, tok = qwen2
    script = _script(tok)
    prefix = tok("Q: 48 clips\n")["input_ids"]
    llm = _FakeLLM(tok, script, start=len(prefix))
    params = GenerationParams(20, stop="\n\n")
    (group,) = VLLMEngine(llm=llm, tokenizer=tok).generate([prefix], 2, params, seed=5)
    forced = _Forced(model, script)
    try:
        (want,) = HFEngine(model, tok).generate([prefix], 1, params, seed=5)
    finally:
        forced.handle.remove()
    for sample in group:
        assert (sample.token_ids, sample.text, sample.finish_reason) == (
            want[0].token_ids,
            want[0].text,
            want[0].finish_reason,
        )
    # first round: one request per sample; second round: both continue after their lead "\n\n"
    assert len(llm.seeds) == 4 and len(set(llm.seeds)) == 4


def test_continue_after_lead_stops_at_the_budget(qwen2):
    from sppd.sampling.engine import StepSample

    lead_only = StepSample([1], [0.0], "", FinishReason.DELIMITER)
    assert continue_after_lead(lead_only, budget=5)
    assert not continue_after_lead(lead_only, budget=1)
    assert not continue_after_lead(StepSample([1, 2], [0.0, 0.0], "x", FinishReason.DELIMITER), budget=5)
    assert not continue_after_lead(StepSample([1], [0.0], "", FinishReason.EOS), budget=5)


def test_request_seeds_differ_for_siblings_and_are_stable_across_runs():
    seeds = {(i, j): request_seed(7, i, j) for i in range(50) for j in range(4)}
    assert len(set(seeds.values())) == len(seeds)  # sibling j of every prompt has its own stream
    assert request_seed(7, 3, 1) != request_seed(8, 3, 1) != request_seed(7, 3, 1, attempt=1)
    assert all(0 <= s < 2**63 for s in seeds.values())
    assert request_seed(0, 0, 0) == 8662518681111019217  # the same in every process (no salted hash)
