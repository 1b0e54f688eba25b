"""Character-level tokenizer for the toy world, as a regular Hugging Face tokenizer folder.

One token per character of printable ASCII plus newline (the toy corpus uses a few dozen of
them; the rest keep arbitrary model output decodable). Built with ``tokenizers`` (a WordLevel
model over single characters) and wrapped in ``PreTrainedTokenizerFast`` so the rest of the
code treats it exactly like a real model's tokenizer: ``save_pretrained`` and
``AutoTokenizer.from_pretrained(folder)`` work offline.

Like Llama's tokenizer, encoding with special tokens (the default) prepends ``<bos>``; EOS is
never added (the trainer appends it where a text ends). Decoding fuses characters with no
spaces, so ``decode(encode(s), skip_special_tokens=True) == s`` and
``decode(encode(s, add_special_tokens=False)) == s`` for every ASCII string ``s``.
There is no chat template: the toy model is a base model.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
CHARACTERS = "\n" + "".join(chr(c) for c in range(32, 127))


def build_toy_tokenizer() -> PreTrainedTokenizerFast:
    """The toy tokenizer: ids 0-3 are ``<pad> <bos> <eos> <unk>``, then one id per character.

    Padding is on the left, as batched generation needs; training code that wants right
    padding builds its batches itself.
    """
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character (newline and space included) is its own pre-token, hence its own token.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B",
        special_tokens=[(BOS, vocab[BOS])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        model_max_length=256,
    )
    return tokenizer
