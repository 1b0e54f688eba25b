"""Tiny stand-ins for the real PRM checkpoints, built in code for the adapter tests.

Each ``make_*_folder`` writes a folder laid out like the real model's (config, tokenizer with
the same special tokens and a chat template where the PRM uses one, safetensors weights under
the same names) around a randomly initialized 2-layer model with hidden size 32, and returns
the in-memory reference pieces so a test can redo the forward pass by hand.

The tokenizers give one token per (ASCII) character, so an expected id sequence can be written
down character by character, independently of the adapter's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

CHARS = [chr(i) for i in range(32, 127)] + ["\n"]
BYTE_SYMBOL = bytes_to_unicode()  # byte -> the printable symbol byte-level BPE uses for it

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def char_tokenizer(
    *,
    bos: str,
    eos: str,
    specials: list[str] = (),
    words: list[str] = (),
    prepend_bos: bool = False,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE without merges: one token per character, like Qwen/Llama-3 on ASCII.

    ``specials`` become special tokens and ``words`` ordinary added tokens (each one token);
    ``prepend_bos`` adds the BOS on ``encode`` like Llama/Mistral tokenizers do. Byte-level
    matters: transformers rebuilds a Qwen2 folder's tokenizer around byte-level pre-tokenizing.
    """
    vocab = {"<unk>": 0, bos: 1, eos: 2}
    for char in CHARS:
        vocab.setdefault(BYTE_SYMBOL[ord(char)], len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    if prepend_bos:
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token="<unk>",
        extra_special_tokens=list(specials),
    )
    tokenizer.add_tokens(list(words))
    tokenizer.chat_template = chat_template
    return tokenizer


def char_ids(tokenizer: Any, text: str) -> list[int]:
    """Ids of ASCII ``text`` written character by character (no tokenizer logic involved)."""
    return [tokenizer.convert_tokens_to_ids(BYTE_SYMBOL[ord(char)]) for char in text]


def _tiny(config_cls: type, vocab_size: int) -> Any:
    return config_cls(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,  # larger than default so scores vary across positions
        tie_word_embeddings=False,
    )


@dataclass
class TinyPRM:
    """A written folder plus what a test needs to recompute scores by hand."""

    folder: Path
    tokenizer: Any
    reference: Any  # the causal LM whose weights were saved
    head: dict[str, torch.Tensor]  # head tensors under their names in the checkpoint


def make_skywork_folder(folder: Path, tokenizer: Any = None) -> TinyPRM:
    """Qwen2 backbone + ``v_head.summary``, sharded: the head sits alone in the second shard.

    ``tokenizer`` replaces the default character tokenizer (which has a bos token).
    """
    torch.manual_seed(0)
    tokenizer = tokenizer or char_tokenizer(bos="<|endoftext|>", eos="<|im_end|>")
    config = _tiny(Qwen2Config, len(tokenizer))
    reference = Qwen2ForCausalLM(config).eval()
    head = {
        "v_head.summary.weight": torch.randn(1, 32) * 0.3,
        "v_head.summary.bias": torch.zeros(1),
    }
    backbone_state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(backbone_state, str(folder / "model-00001-of-00002.safetensors"))
    save_file(head, str(folder / "model-00002-of-00002.safetensors"))
    weight_map = {k: "model-00001-of-00002.safetensors" for k in backbone_state}
    weight_map.update({k: "model-00002-of-00002.safetensors" for k in head})
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    config.architectures = ["Qwen2ForPrmModel"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TinyPRM(folder, tokenizer, reference, head)


def make_qwen_math_prm_folder(folder: Path) -> TinyPRM:
    """Qwen2 backbone + ``score.0`` / ``score.2`` (2 labels), ChatML template, ``<extra_0>``."""
    torch.manual_seed(1)
    tokenizer = char_tokenizer(
        bos="<|endoftext|>",
        eos="<|im_end|>",
        specials=["<|im_start|>", "<extra_0>"],
        chat_template=CHATML_TEMPLATE,
    )
    config = _tiny(Qwen2Config, len(tokenizer))
    reference = Qwen2ForCausalLM(config).eval()
    head = {
        "score.0.weight": torch.randn(32, 32) * 0.3,
        "score.0.bias": torch.randn(32) * 0.3,
        "score.2.weight": torch.randn(2, 32) * 0.3,
        "score.2.bias": torch.zeros(2),
    }
    state = {k: v.contiguous() for k, v in reference.model.state_dict().items()}
    state = {f"model.{k}": v for k, v in state.items()} | head
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    config.architectures = ["Qwen2ForProcessRewardModel"]
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TinyPRM(folder, tokenizer, reference, head)


def make_math_shepherd_folder(folder: Path) -> TinyPRM:
    """A Mistral causal LM; the tokenizer prepends ``<s>`` and knows ``ки`` as one token."""
    torch.manual_seed(2)
    tokenizer = char_tokenizer(bos="<s>", eos="</s>", words=["ки"], prepend_bos=True)
    reference = MistralForCausalLM(_tiny(MistralConfig, len(tokenizer))).eval()
    reference.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TinyPRM(folder, tokenizer, reference, {})


def make_rlhflow_folder(folder: Path) -> TinyPRM:
    """A Llama causal LM with a Llama-3-style chat template."""
    torch.manual_seed(3)
    tokenizer = char_tokenizer(
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        specials=["<|start_header_id|>", "<|end_header_id|>"],
        chat_template=LLAMA3_TEMPLATE,
    )
    reference = LlamaForCausalLM(_tiny(LlamaConfig, len(tokenizer))).eval()
    reference.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TinyPRM(folder, tokenizer, reference, {})


MAKERS = {
    "skywork": make_skywork_folder,
    "qwen25-math-prm": make_qwen_math_prm_folder,
    "math-shepherd": make_math_shepherd_folder,
    "rlhflow": make_rlhflow_folder,
}
