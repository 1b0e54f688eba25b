"""A tiny Qwen2.5-style base model built in code: what users run, at toy size, for the real-model tests.

The tokenizer is transformers' own ``Qwen2Tokenizer`` around a byte-level BPE trained here (with
the ``tokenizers`` library and Qwen2's pre-tokenizing regex) on a few shipped sentences, so
``"\\n\\n"`` and ``" She"`` are single tokens as in the real vocabulary. Like a Qwen2.5 *base*
checkpoint it has no bos token, ``<|endoftext|>`` as EOS and pad, ``<|im_start|>``/``<|im_end|>``
as special tokens and a ChatML chat template. The model is a randomly initialised
``Qwen2ForCausalLM`` (hidden 32, 2 layers, 2 heads / 1 kv head). Building both takes well under
a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CORPUS = [
    "Step 1: Natalia sold 48 clips in April.\n\nStep 2: She sold half as many in May, so 48 / 2 = 24.\n\n",
    "Step 3: In total she sold 48 + 24 = 72 clips.\n\nThe answer is 72",
    "Weng earns $12 an hour for babysitting. Yesterday she did 50 minutes of babysitting.\n\n",
    "Step 1: She earns 12 / 60 = 0.2 dollars per minute.\n\nStep 2: So she earned 0.2 * 50 = 10.\n\n",
    "Betty is saving money for a new wallet which costs $100. Her parents give her $15.\n\n",
    "Question: How many clips did Natalia sell altogether in April and May?\nAnswer:",
    "Let's think step by step. The answer is \\boxed{10}.",
    "Step 1: She needs 100 / 2 = 50.\n\nStep 2: She has 50 + 15 = 65.\n\nStep 3: She still needs 100 - 65 = 35.\n\n",
    "Step 1: Add the numbers.\n\nStep 2: Multiply.\n\nStep 3: Divide.\n\nStep 4: The answer is 5\n\n",
]
VOCAB_SIZE = 480


def build_qwen2_tokenizer() -> Qwen2Tokenizer:
    """Qwen2.5-base-like tokenizer: byte-level BPE trained on ``CORPUS``, no bos, ChatML template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS, trainer=trainer)
    tokenizer = Qwen2Tokenizer(vocab=backend.get_vocab(), merges=_merges(backend), extra_special_tokens=SPECIALS[1:])
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _merges(backend: Tokenizer) -> list[tuple[str, str]]:
    """The merge list of a trained ``tokenizers`` BPE (read back through its JSON form)."""
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def build_qwen2_model(tokenizer, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised tiny ``Qwen2ForCausalLM`` over ``tokenizer``'s vocabulary, eval mode."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # a base model: <|endoftext|> only
    return model


def build_qwen2(seed: int = 0) -> tuple[Qwen2ForCausalLM, Qwen2Tokenizer]:
    tokenizer = build_qwen2_tokenizer()
    return build_qwen2_model(tokenizer, seed), tokenizer


def save_qwen2(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer as an HF folder (what ``model.path`` points at)."""
    model, tokenizer = build_qwen2(seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
