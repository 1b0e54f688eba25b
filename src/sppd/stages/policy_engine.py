"""The policy's generation engine as the sample, score (rollouts) and eval stages build it.

An engine that loads the weights itself (vLLM) gets the folder, not a ``transformers`` copy of the
policy: that copy would sit on the GPU for the whole stage next to vLLM's own. A missing vLLM is
reported in one line before anything is loaded. When prompts go through the chat template, the
template's end-of-turn tokens end a generation like EOS (``prompting.end_of_turn_ids``).
"""

from __future__ import annotations

from pathlib import Path

from sppd.modeling import load_policy, load_tokenizer
from sppd.prompting import end_of_turn_ids
from sppd.sampling.engine import Engine, build_engine, loads_own_weights
from sppd.settings import RunConfig
from sppd.types import DType


def load_engine(cfg: RunConfig, path: str | Path, batch_size: int) -> tuple[Engine, object]:
    """``(engine, tokenizer)`` of ``cfg.sample.engine`` over the policy in folder ``path``."""
    name = cfg.sample.engine
    kwargs: dict = {}
    if name == "vllm":
        from sppd.sampling.vllm_engine import require_vllm

        require_vllm()
        kwargs = {
            "dtype": DType(cfg.sample.vllm_dtype).torch_name,
            "gpu_memory_utilization": cfg.sample.vllm_gpu_memory_utilization,
        }
    if loads_own_weights(name):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"model folder not found: {path} (config key 'model.path')")
        tokenizer = load_tokenizer(path, cfg.model.trust_remote_code)
        kwargs["model_path"] = str(path)
    else:
        model, tokenizer = load_policy(path, cfg.model)
        kwargs["model"] = model
    engine = build_engine(
        name,
        tokenizer=tokenizer,
        batch_size=batch_size,
        extra_eos_ids=end_of_turn_ids(tokenizer, cfg.prompt),
        **kwargs,
    )
    return engine, tokenizer
