"""Step splitting with a SentencePiece-style tokenizer (``▁`` word starts, like Llama-2 and Mistral).

Decoding one such token alone drops its leading space, so the engine's running text (pieces
decoded one by one, used only to find the delimiter) differs from the step's real text. These
tests show that ``step.delimiter=newline`` and ``blank_line`` still work: the delimiter is found
and each step decodes to its own text, with the spaces, whether the newline is a byte-fallback
token (``<0x0A>``, Llama/Mistral) or merged into a word (``three.\\n\\n``, Gemma-like vocabularies).

The policy is scripted: a GPT-2 whose only signal is its position embedding, with the LM head
set so that greedy or sampled decoding emits a fixed token sequence. The steps it must produce
are therefore known in advance.
"""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, LlamaTokenizerFast

from sppd.sampling.engine import FinishReason, GenerationParams
from sppd.sampling.hf_engine import HFEngine
from sppd.settings import StepConfig
from sppd.types import StepDelimiter

STEPS = ["Step one: add two and three.", "So the sum is five.", "The answer is 5."]
CORPUS = [*STEPS, "Q: add two and three. What is the sum?"]
BYTES = [f"<0x{i:02X}>" for i in range(256)]


def sentencepiece_tokenizer(newline_in_vocab: bool) -> LlamaTokenizerFast:
    """BPE over the Metaspace pre-tokenizer with byte fallback and Llama's decoder.

    ``newline_in_vocab``: train on text with blank lines, so merges hold ``"\\n\\n"`` inside
    words; else a newline exists only as the byte token ``<0x0A>``. Byte tokens are ordinary
    vocabulary, as in Llama's (were they special, ``skip_special_tokens`` would drop newlines).
    """
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    corpus = [s + "\n\n" for s in CORPUS] * 3 if newline_in_vocab else CORPUS * 3
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    backend.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(backend.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{b: 3 + i for i, b in enumerate(BYTES)}}
    for piece in sorted(trained["vocab"], key=trained["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    backend.model = models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return LlamaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def scripted_policy(tokenizer, prompt_len: int, script: list[int]) -> GPT2LMHeadModel:
    """A GPT-2 that emits ``script`` after a prompt of ``prompt_len`` tokens, whatever the tokens.

    Token embeddings and every block's output are zero, so the final hidden state is the layer-
    normed one-hot position embedding; the LM head row of ``script[j]`` reads position
    ``prompt_len - 1 + j`` with a logit (~57) that leaves no other token any probability.
    """
    width = 128
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=width, n_embd=width, n_layer=1, n_head=2, tie_word_embeddings=False
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        model.transformer.wpe.weight.copy_(torch.eye(width))
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        model.lm_head.weight.zero_()
        for j, token in enumerate(script):
            model.lm_head.weight[token, prompt_len - 1 + j] = 5.0
    return model


@pytest.mark.parametrize("newline_in_vocab", [False, True], ids=["byte-fallback-newline", "merged-newline"])
@pytest.mark.parametrize("delimiter", [StepDelimiter.NEWLINE, StepDelimiter.BLANK_LINE])
def test_steps_split_and_decode_with_a_sentencepiece_tokenizer(newline_in_vocab, delimiter):
    tokenizer = sentencepiece_tokenizer(newline_in_vocab)
    solution = "\n\n".join(STEPS)
    pieces = tokenizer.tokenize(solution)
    assert pieces[0] == "▁Step" and "▁add" in pieces  # SentencePiece-style word starts
    assert ("<0x0A>" in pieces) != newline_in_vocab
    prompt = tokenizer("Q: add two and three.\n").input_ids
    script = tokenizer(solution, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    engine = HFEngine(scripted_policy(tokenizer, len(prompt), script), tokenizer)
    stop = StepConfig(delimiter=delimiter).delimiter_text()

    prefix, steps = list(prompt), []
    while not steps or steps[-1].finish_reason == FinishReason.DELIMITER:
        assert len(steps) < len(STEPS), [s.text for s in steps]
        (step,) = engine.generate([prefix], 1, GenerationParams(max_new_tokens=40, stop=stop), seed=len(steps))[0]
        steps.append(step)
        prefix += step.token_ids

    assert [s.text for s in steps] == STEPS  # spaces kept, delimiter found after each step
    assert [s.finish_reason for s in steps] == [FinishReason.DELIMITER, FinishReason.DELIMITER, FinishReason.EOS]
    assert prefix[len(prompt) :] == script  # the steps' tokens are exactly the generated sequence
