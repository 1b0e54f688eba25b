"""RLHFlow PRMs (``RLHFlow/Llama3.1-8B-PRM-{Mistral,Deepseek}-Data``): steps as chat turns.

Input convention, from RLHFlow's ``math-rm/prm_evaluate.py`` and README: each step (stripped)
is a user turn, the first one being ``question + " " + step_1``, and every user turn is
answered by an assistant turn ``"+"``; the conversation goes through the tokenizer's chat
template (``apply_chat_template``, which adds no further special tokens). A step's score is the
softmax over the ``+`` / ``-`` next-token logits at the position that predicts that step's
``+`` answer, taking ``+``; the ids are the last ids of ``encode("+")`` and ``encode("-")``.

RLHFlow's script re-runs the growing conversation once per step and reads position ``-3``
(which assumes the template ends ``+<|eot_id|>``). A causal model gives the same numbers in one
pass over the full conversation, and we locate each answer by rendering the conversation up
to that user turn with ``add_generation_prompt=True``: the ``+`` comes right after that prefix.
This is exact for any template that renders a conversation's prefixes as its own prefixes.

Folder: any ``AutoModelForCausalLM`` folder whose tokenizer has a chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sppd.modeling import load_tokenizer
from sppd.prm.base import EncodedInput, PRMInput
from sppd.prm.hf_common import (
    HFPRMOptions,
    candidate_logits,
    load_causal_lm,
    pad_token_id_of,
    resolve_folder,
    score_with_token_model,
)

GOOD_TOKEN = "+"
BAD_TOKEN = "-"


class RLHFlowPRM:
    """RLHFlow-style PRM adapter; a ``TokenLevelPRM``."""

    name = "rlhflow"

    def __init__(self, model: Any, tokenizer: Any, options: HFPRMOptions) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.device = next(model.parameters()).device
        self.pad_token_id = pad_token_id_of(tokenizer)
        self.good_id = tokenizer(GOOD_TOKEN, add_special_tokens=False)["input_ids"][-1]
        self.bad_id = tokenizer(BAD_TOKEN, add_special_tokens=False)["input_ids"][-1]

    def conversation(self, item: PRMInput) -> list[dict[str, str]]:
        """User turn per step (the first prefixed by the question), each answered ``+``."""
        messages = []
        for k, step in enumerate(item.steps):
            text = f"{item.question} {step.strip()}" if k == 0 else step.strip()
            messages.append({"role": "user", "content": text})
            messages.append({"role": "assistant", "content": GOOD_TOKEN})
        return messages

    def _ids(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, item: PRMInput) -> EncodedInput:
        messages = self.conversation(item)
        input_ids = self._ids(messages, add_generation_prompt=False)
        positions = []
        for k in range(len(item.steps)):
            prefix_ids = self._ids(messages[: 2 * k + 1], add_generation_prompt=True)
            answer_at = len(prefix_ids)
            if input_ids[: answer_at + 1] != prefix_ids + [self.good_id]:
                raise ValueError(
                    f"{self.name}: the chat template does not render step {k}'s '+' answer right "
                    "after the generation prompt; this adapter cannot locate the score position"
                )
            positions.append(answer_at - 1)  # the logits here predict the '+'
        return EncodedInput(input_ids=input_ids, score_positions=positions)

    def token_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """``P(+)`` against ``-`` for the token after every position, ``(B, T)``."""
        logits = candidate_logits(self.model, [self.good_id, self.bad_id], input_ids, attention_mask, position_ids)
        return torch.softmax(logits, dim=-1)[..., 0]

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        return score_with_token_model(self, items, self.options, self.device)


def build_rlhflow_prm(path: str | Path, **options: Any) -> RLHFlowPRM:
    """Load an RLHFlow-style PRM folder; ``options`` are ``HFPRMOptions`` fields."""
    opts = HFPRMOptions(path=path, **options)
    folder = resolve_folder(path)
    tokenizer = load_tokenizer(folder, opts.trust_remote_code)
    if not tokenizer.chat_template:
        raise ValueError(f"{folder}: the tokenizer has no chat template, which this PRM needs")
    return RLHFlowPRM(load_causal_lm(folder, opts), tokenizer, opts)
