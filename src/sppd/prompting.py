"""Turn a question into the prompt token ids every stage uses (sampling, training, eval).

One function for all stages so that the policy is trained on exactly the prompts it is sampled
and evaluated with. Models with a chat template get the paper's system prompt (App. C) through
it; base models (and the toy model) get a plain text template.
"""

from __future__ import annotations

from sppd.settings import PromptConfig
from sppd.types import ChatTemplateMode


def uses_chat_template(tokenizer, cfg: PromptConfig) -> bool:
    has = bool(getattr(tokenizer, "chat_template", None))
    if cfg.chat_template == ChatTemplateMode.ALWAYS and not has:
        raise ValueError("config key 'prompt.chat_template' is 'always' but the tokenizer has no chat template")
    return has and cfg.chat_template != ChatTemplateMode.NEVER


def build_prompt_ids(tokenizer, question: str, cfg: PromptConfig) -> list[int]:
    """Token ids of the prompt that precedes the first step."""
    if uses_chat_template(tokenizer, cfg):
        messages = [{"role": "user", "content": question}]
        if cfg.system:
            messages.insert(0, {"role": "system", "content": cfg.system})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer versions
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    text = cfg.template.format(question=question)
    return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]


# End-of-turn tokens of common chat templates (ChatML/Qwen, Llama 3, Phi-3, Gemma). A base model's
# EOS is its end-of-text token, so without these a chat-templated answer runs past its turn.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


def end_of_turn_ids(tokenizer, cfg: PromptConfig) -> list[int]:
    """Ids of the tokenizer's end-of-turn tokens when prompts use its chat template, else ``[]``.

    The engines stop at these as at EOS (a step or completion ends with the assistant's turn).
    Only tokens that are single tokens of the vocabulary count.
    """
    if not uses_chat_template(tokenizer, cfg):
        return []
    vocab = tokenizer.get_vocab()
    return sorted({int(vocab[t]) for t in END_OF_TURN_TOKENS if t in vocab})


def end_token_id(tokenizer, cfg: PromptConfig) -> int | None:
    """The token training puts after a complete trajectory: one the engines stop at.

    With the chat template, the end of the assistant's turn: the tokenizer's EOS when it is an
    end-of-turn token (instruct tokenizers), else the first of ``END_OF_TURN_TOKENS`` in the
    vocabulary (a ChatML base model ends turns with ``<|im_end|>``, not its ``<|endoftext|>``).
    Without it (or with no end-of-turn token in the vocabulary): EOS. None when there is neither.
    """
    eos = tokenizer.eos_token_id
    turn_ids = end_of_turn_ids(tokenizer, cfg)
    if not turn_ids or (eos is not None and int(eos) in turn_ids):
        return None if eos is None else int(eos)
    vocab = tokenizer.get_vocab()
    return next(int(vocab[t]) for t in END_OF_TURN_TOKENS if t in vocab)
