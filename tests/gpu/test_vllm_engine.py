"""GPU-only: the vLLM engine agrees with the transformers engine (skipped without CUDA + vLLM)."""

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
pytest.importorskip("vllm")

from sppd.sampling.engine import FinishReason, GenerationParams  # noqa: E402
from sppd.sampling.hf_engine import HFEngine  # noqa: E402
from sppd.sampling.vllm_engine import VLLMEngine  # noqa: E402


@pytest.mark.gpu
def test_greedy_steps_match_transformers(tiny_policy_dir, tiny_policy):
    model, tok = tiny_policy
    prefixes = [tok("Q: 1+2*3\n")["input_ids"], tok("Q: 9-4\n")["input_ids"]]
    params = GenerationParams(max_new_tokens=16, greedy=True, stop="\n")
    ours = VLLMEngine(model_path=str(tiny_policy_dir), dtype="float32", gpu_memory_utilization=0.2).generate(
        prefixes, 1, params, 0
    )
    ref = HFEngine(model, tok).generate(prefixes, 1, params, 0)
    for (a,), (b,) in zip(ours, ref):
        assert a.token_ids == b.token_ids
        assert a.finish_reason == b.finish_reason or {a.finish_reason, b.finish_reason} <= {
            FinishReason.EOS,
            FinishReason.DELIMITER,
        }
        assert a.token_logps == pytest.approx(b.token_logps, abs=1e-2)
