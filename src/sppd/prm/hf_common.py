"""What every Hugging Face PRM adapter shares: loading options, folders, batching, the score loop.

Adapters only decide the token layout (``encode``) and the per-token score (``token_scores``);
this module finds local or already-cached folders (never the network), loads causal LMs from
them (device and dtype from ``sppd.runtime``; tokenizers come from ``sppd.modeling``), groups
items of similar length into batches, pads on the right and gathers the scores at each item's
score positions.

Right padding keeps every real token at the position it has when scored alone (a causal model
never looks ahead at the pads), which is what makes batched scores equal one-at-a-time scores.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sppd.prm.base import PRMInput, PRMScoreError, TokenLevelPRM, check_scores
from sppd.runtime import resolve_device, resolve_dtype
from sppd.types import DType

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class HFPRMOptions:
    """Loading and batching options shared by the HF PRM adapters."""

    path: str | Path  # local model folder, or a hub id already in the local HF cache
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: DType | str = DType.AUTO  # weights dtype: auto | fp32 | bf16 | fp16 (torch spellings accepted)
    trust_remote_code: bool = False  # run code shipped in the folder; off unless asked for
    batch_size: int = 8  # most sequences per forward pass
    max_batch_tokens: int = 16384  # most padded tokens (rows x longest row) per forward pass

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_batch_tokens < 1:
            raise ValueError("batch_size and max_batch_tokens must be >= 1")
        try:
            object.__setattr__(self, "dtype", DType(self.dtype))  # frozen: parse the spelling once, here
        except ValueError:
            choices = ", ".join(d.value for d in DType)
            raise ValueError(f"dtype {self.dtype!r} is not one of: {choices}") from None


def resolve_folder(path: str | Path) -> Path:
    """The local folder behind ``path``: the folder itself, or a hub id's cached snapshot.

    Never downloads; a missing folder is an error that says so.
    """
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=str(path), local_files_only=True))
    except Exception as exc:  # a bad repo id, or not in the cache: same answer for the user
        raise FileNotFoundError(
            f"PRM folder {str(path)!r} is neither a local folder nor in the local HF cache; "
            "sppd never downloads weights, so fetch the model folder first"
        ) from exc


def load_causal_lm(folder: Path, options: HFPRMOptions) -> PreTrainedModel:
    """A causal LM from ``folder`` on the chosen device and dtype, in eval mode."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(options.device)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        local_files_only=True,
        trust_remote_code=options.trust_remote_code,
        dtype=resolve_dtype(options.dtype, device),
        device_map=device,  # load straight onto the device: no CPU copy of a 7B model
    )
    return model.eval().requires_grad_(False)


def single_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """The id of ``text`` when it encodes to exactly one token (no special tokens added)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"expected {text!r} to be one token in this tokenizer, got ids {ids}")
    return ids[0]


def pad_token_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    """Any id works for right padding (pads are masked and never looked back at); prefer pad."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def read_prefixed_tensors(folder: Path, prefix: str) -> dict[str, torch.Tensor]:
    """All safetensors weights of ``folder`` whose name starts with ``prefix``, prefix removed.

    Reads ``model.safetensors`` or, for sharded folders, only the shards that the index maps
    ``prefix`` names to, so a head is found without loading the backbone twice.
    """
    from safetensors import safe_open

    index_file = folder / "model.safetensors.index.json"
    if index_file.is_file():
        weight_map: dict[str, str] = json.loads(index_file.read_text())["weight_map"]
        shards = sorted({shard for name, shard in weight_map.items() if name.startswith(prefix)})
    elif (folder / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        raise FileNotFoundError(f"{folder}: no model.safetensors or model.safetensors.index.json")
    tensors: dict[str, torch.Tensor] = {}
    for shard in shards:
        with safe_open(str(folder / shard), framework="pt") as handle:
            for name in handle.keys():
                if name.startswith(prefix):
                    tensors[name[len(prefix) :]] = handle.get_tensor(name)
    if not tensors:
        raise KeyError(f"{folder}: no weights named {prefix}* (is this the right PRM family?)")
    return tensors


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report while loading a backbone out of a with-head checkpoint.

    The head and lm_head keys are expected to be 'unexpected' there; missing keys are checked
    explicitly by the caller instead of trusting a log line.
    """
    from transformers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(previous)


def load_qwen2_backbone(folder: Path, dtype: torch.dtype, device: torch.device) -> PreTrainedModel:
    """The ``Qwen2Model`` inside a with-head checkpoint (``model.*`` weights).

    A backbone weight missing from the folder is an error: transformers would otherwise fill
    it with random numbers and only log it.
    """
    from transformers import Qwen2Model

    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != "qwen2":
        raise ValueError(f"{folder}: expected a qwen2 checkpoint, config says {model_type!r}")
    with quiet_transformers():
        backbone, info = Qwen2Model.from_pretrained(
            folder, local_files_only=True, dtype=dtype, device_map=device, output_loading_info=True
        )
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise KeyError(f"{folder}: backbone weights missing from the checkpoint: {missing[:5]}")
    return backbone


def plan_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group item indices into batches of similar length, longest first.

    A batch holds at most ``batch_size`` items and ``max_batch_tokens`` padded tokens; an item
    longer than the token budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches:
            current = batches[-1]
            longest = lengths[current[0]]  # sorted: the first item is the longest
            fits = (len(current) + 1) * longest <= max_batch_tokens
            if len(current) < batch_size and fits:
                current.append(index)
                continue
        batches.append([index])
    return batches


def pad_right(
    sequences: Sequence[Sequence[int]], pad_token_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)``, each ``(B, T)``, padded on the right.

    Position ids count real tokens from 0, as they would for the sequence on its own.
    """
    import torch

    width = max(len(seq) for seq in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def score_with_token_model(
    prm: TokenLevelPRM, items: Sequence[PRMInput], options: HFPRMOptions, device: torch.device
) -> list[list[float]]:
    """The plain path-by-path score loop for a ``TokenLevelPRM``: encode, batch, gather, check."""
    import torch

    scores: list[list[float]] = [[] for _ in items]
    encoded = {i: prm.encode(item) for i, item in enumerate(items) if item.steps}
    for i, enc in encoded.items():
        if len(enc.score_positions) != len(items[i].steps):
            raise PRMScoreError(
                f"{prm.name}: item {i}: the input has {len(enc.score_positions)} step separators "
                f"for {len(items[i].steps)} steps (does a step or the question contain one?)"
            )
    indices = list(encoded)
    lengths = [len(encoded[i].input_ids) for i in indices]
    with torch.inference_mode():
        for batch in plan_batches(lengths, options.batch_size, options.max_batch_tokens):
            rows = [indices[b] for b in batch]
            input_ids, attention_mask, position_ids = pad_right(
                [encoded[i].input_ids for i in rows], prm.pad_token_id, device
            )
            token_scores = prm.token_scores(input_ids, attention_mask, position_ids)
            token_scores = token_scores.float().cpu()
            for row, i in enumerate(rows):
                scores[i] = token_scores[row, encoded[i].score_positions].tolist()
    check_scores(scores, items, where=prm.name)
    return scores


def candidate_logits(
    model: PreTrainedModel,
    token_ids: Sequence[int],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
) -> torch.Tensor:
    """Next-token logits restricted to ``token_ids``, shape ``(B, T, len(token_ids))``.

    Applies only the lm_head rows that are needed: the full ``(B, T, vocab)`` logits of a
    128k-vocabulary model would cost gigabytes for nothing. Models whose head is more than a
    plain linear map (logit soft-capping or scaling) fall back to the full logits.
    """
    import torch

    config = model.config
    plain_head = isinstance(model.get_output_embeddings(), torch.nn.Linear) and not any(
        getattr(config, attr, None) for attr in ("final_logit_softcapping", "logit_scale")
    )
    kwargs: dict[str, Any] = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,  # one pass, no generation: a KV cache would only cost memory
    )
    if not plain_head:
        return model(**kwargs).logits[..., list(token_ids)].float()
    hidden = model.base_model(**kwargs).last_hidden_state
    head = model.get_output_embeddings()
    logits = hidden @ head.weight[list(token_ids)].T
    if head.bias is not None:
        logits = logits + head.bias[list(token_ids)]
    return logits.float()
