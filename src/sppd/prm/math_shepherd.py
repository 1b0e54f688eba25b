"""Math-Shepherd PRM (``peiyi9979/math-shepherd-mistral-7b-prm``): a causal LM read at tags.

Input convention, from the model card: ``f"{question} {output}"`` encoded with
``tokenizer.encode`` (so with the tokenizer's own BOS), where ``output`` is
``"Step 1: ... ки\\nStep 2: ... ки"``: every step ends with the tag ``" ки"``, steps are joined
by a newline, and steps are numbered ``Step k: `` as in the Math-Shepherd data. At each tag
token the next-token logits of ``+`` and ``-`` are softmaxed and the ``+`` probability is the
step's score. The tag id is the last id of ``encode("ки")``; the card takes the candidates from
``encode("+ -")[1:]``, which for its sentencepiece tokenizer equals encoding ``+`` and ``-``
separately (each gets the word-start marker), the form used here so that any tokenizer works.

Folder: any ``AutoModelForCausalLM`` folder whose tokenizer has ``ки``, ``+`` and ``-`` as
single tokens.
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
    single_token_id,
)

STEP_TAG = "ки"
GOOD_TOKEN = "+"
BAD_TOKEN = "-"


class MathShepherdPRM:
    """Math-Shepherd adapter; a ``TokenLevelPRM``."""

    name = "math-shepherd"

    def __init__(self, model: Any, tokenizer: Any, options: HFPRMOptions, number_steps: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.number_steps = number_steps
        self.device = next(model.parameters()).device
        self.pad_token_id = pad_token_id_of(tokenizer)
        self.tag_id = tokenizer(STEP_TAG, add_special_tokens=False)["input_ids"][-1]
        self.candidate_ids = [
            single_token_id(tokenizer, GOOD_TOKEN),
            single_token_id(tokenizer, BAD_TOKEN),
        ]

    def render(self, item: PRMInput) -> str:
        """``question + " " + "Step 1: s1 ки\\nStep 2: s2 ки"`` (numbering optional)."""
        steps = [step.strip() for step in item.steps]
        if self.number_steps:
            steps = [f"Step {k}: {step}" for k, step in enumerate(steps, start=1)]
        output = "\n".join(f"{step} {STEP_TAG}" for step in steps)
        return f"{item.question} {output}"

    def encode(self, item: PRMInput) -> EncodedInput:
        input_ids = list(self.tokenizer(self.render(item))["input_ids"])  # = tokenizer.encode
        positions = [i for i, token in enumerate(input_ids) if token == self.tag_id]
        return EncodedInput(input_ids=input_ids, score_positions=positions)

    def token_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """``P(+)`` against ``-`` for the token after every position, ``(B, T)``."""
        logits = candidate_logits(self.model, self.candidate_ids, input_ids, attention_mask, position_ids)
        return torch.softmax(logits, dim=-1)[..., 0]

    def score(self, items: Sequence[PRMInput]) -> list[list[float]]:
        return score_with_token_model(self, items, self.options, self.device)


def build_math_shepherd_prm(path: str | Path, *, number_steps: bool = True, **options: Any) -> MathShepherdPRM:
    """Load a Math-Shepherd folder; ``options`` are ``HFPRMOptions`` fields.

    ``number_steps=False`` drops the ``Step k: `` prefixes for steps that already carry them.
    """
    opts = HFPRMOptions(path=path, **options)
    folder = resolve_folder(path)
    tokenizer = load_tokenizer(folder, opts.trust_remote_code)
    model = load_causal_lm(folder, opts)
    return MathShepherdPRM(model, tokenizer, opts, number_steps)
