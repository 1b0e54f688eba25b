"""The stages' engine: end-of-turn tokens stop generation; vLLM gets the folder, not a loaded policy."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import pytest
import torch

from fixtures_qwen2 import save_qwen2
from sppd.sampling.engine import FinishReason, GenerationParams
from sppd.settings import load_run_config
from sppd.stages import policy_engine


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    return save_qwen2(tmp_path_factory.mktemp("qwen2") / "policy")


def _cfg(tmp_path, folder, *extra):
    return load_run_config("toy-tiny", [f"run_dir={tmp_path / 'run'}", f"model.path={folder}", *extra])


def _force(model, script):
    calls = iter(range(10_000))

    def hook(module, args, out):
        forced = torch.full_like(out, -1e4)
        forced[..., script[min(next(calls), len(script) - 1)]] = 0.0
        return forced

    return model.lm_head.register_forward_hook(hook)


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_chat_template_end_of_turn_ends_a_base_models_generation(tmp_path, qwen2_dir, mode):
    cfg = _cfg(tmp_path, qwen2_dir, "model.device=cpu", f"prompt.chat_template={mode}")
    engine, tok = policy_engine.load_engine(cfg, qwen2_dir, batch_size=4)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert tok.eos_token == "<|endoftext|>"  # a base model: <|im_end|> is not its EOS
    script = tok(" She sold 48", add_special_tokens=False)["input_ids"] + [im_end]
    script += tok("<|im_start|>user\nmore", add_special_tokens=False)["input_ids"]
    handle = _force(engine.model, script)
    try:
        ((sample,),) = engine.generate([tok("Q: 1\n")["input_ids"]], 1, GenerationParams(16, stop="\n\n"), seed=0)
    finally:
        handle.remove()
    if mode == "auto":  # the chat template is used: its end of turn ends the answer
        assert sample.finish_reason == FinishReason.EOS
        assert sample.token_ids == script[: script.index(im_end) + 1]
        assert sample.text == "She sold 48"
    else:  # plain prompts: <|im_end|> is just a token
        assert len(sample.token_ids) == 16 and sample.finish_reason == FinishReason.LENGTH


def test_vllm_missing_is_one_line_before_any_model_load(tmp_path, qwen2_dir, monkeypatch):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from sppd.stages import sample

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(policy_engine, "load_policy", no_load)
    monkeypatch.setattr(policy_engine, "load_tokenizer", no_load)
    with pytest.raises(ImportError, match="sample.engine") as err:
        sample.main(_cfg(tmp_path, qwen2_dir, "sample.engine=vllm"))
    assert "\n" not in str(err.value) and "pip install" in str(err.value)


def test_vllm_engine_gets_the_folder_dtype_and_memory_share_not_a_loaded_policy(tmp_path, qwen2_dir, monkeypatch):
    built = {}

    class FakeLLM:
        def __init__(self, **kwargs):
            built.update(kwargs)

    vllm = types.ModuleType("vllm")
    vllm.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    vllm.LLM = FakeLLM
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(policy_engine, "load_policy", lambda *a, **k: pytest.fail("the HF policy was loaded"))
    extra = ["sample.engine=vllm", "sample.vllm_dtype=fp16", "sample.vllm_gpu_memory_utilization=0.6"]
    extra.append("prompt.chat_template=auto")
    engine, tok = policy_engine.load_engine(_cfg(tmp_path, qwen2_dir, *extra), qwen2_dir, batch_size=8)
    assert built["model"] == str(qwen2_dir)
    assert built["dtype"] == "float16" and built["gpu_memory_utilization"] == 0.6
    assert engine.extra_eos_ids == [tok.convert_tokens_to_ids("<|im_end|>")]
