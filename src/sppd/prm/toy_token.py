"""The toy PRM's token head (``prm.label: local``): every token of a step is judged on its own.

Why: a value head reading one hidden state per step learned to check the toy arithmetic only
slowly (held-out step agreement 0.74-0.78 after ~170 s, whatever the labels), because the
~1M-parameter backbone has to learn to compare the digits it reads with the ones it would
write. The policy's language-model head already makes exactly that comparison: the log-probability
of the token that was written. So this head scores token t as

    p_t = sigmoid(scale * log_softmax(lm_head(h_{t-1}))[x_t] + bias)

(``lm_head`` and ``h`` start as the policy's), trained with BCE on "token t is a right
continuation of a right line so far" (:mod:`sppd.prm.toy_lines`): likelihood on right tokens,
unlikelihood on the first wrong one. A step is right when all its tokens are, so the value after
a step is the min of ``p`` over the tokens of every step so far (never the question's).
``token_scores`` returns that running min at every token, so the scores at the newlines are
prefix values and tree packing works unchanged: which tokens lie on a token's path, and which
one precedes it, is read from the attention mask (2-D padding or the 4-D tree mask).
"""

from __future__ import annotations

import torch
from torch import nn

START_BIAS = 2.0  # log p = -0.7 (two equally likely right tokens, e.g. ", " or "\n") starts at 0.79


class ToyTokenModel(nn.Module):
    """``LlamaModel`` + the policy's ``lm_head`` + ``scale``/``bias``: one "right" logit per token."""

    def __init__(self, backbone: nn.Module, lm_head: nn.Linear, newline_id: int) -> None:
        super().__init__()
        self.model = backbone  # named like Skywork's so packing finds the backbone config
        self.lm_head = lm_head
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.bias = nn.Parameter(torch.tensor(START_BIAS))
        self.newline_id = newline_id

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, T)`` that each token is right given the tokens before it on its path."""
        hidden = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (B, T, H)
        prev = previous_index(visible(attention_mask, input_ids.shape[1]))  # (B, T), -1 for none
        h_prev = hidden.gather(1, prev.clamp(min=0)[..., None].expand_as(hidden))
        logp = torch.log_softmax(self.lm_head(h_prev).float(), dim=-1).gather(-1, input_ids[..., None])[..., 0]
        return (self.scale * logp + self.bias).masked_fill(prev < 0, 10.0)

    def prefix_scores(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        """``(B, T)``: the min of ``sigmoid(forward)`` over the step tokens on each token's path up
        to it (1.0 while there are none: the question)."""
        seen = visible(attention_mask, input_ids.shape[1])  # (B, T, T): key s on query t's path
        scores = torch.sigmoid(self(input_ids, attention_mask, position_ids))
        newline = input_ids == self.newline_id
        # a step token has a newline (the question's last, at least) strictly before it on its path
        strict = seen & ~torch.eye(seen.shape[-1], dtype=torch.bool, device=seen.device)
        step_token = (strict & newline[:, None, :]).any(-1)  # (B, T)
        keys = seen & step_token[:, None, :]
        return torch.where(keys, scores[:, None, :], torch.ones_like(scores)[:, None, :]).amin(-1)


def visible(attention_mask: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, T, T)`` bool: may query t see key s (causal; a 2-D mask marks the real tokens, a 4-D
    one is additive, 0 where allowed)."""
    if attention_mask.dim() == 4:
        return attention_mask[:, 0] == 0
    causal = torch.ones(width, width, dtype=torch.bool, device=attention_mask.device).tril()
    return causal[None] & attention_mask.bool()[:, None, :]


def previous_index(seen: torch.Tensor) -> torch.Tensor:
    """``(B, T)``: the last key before each query on its path, -1 when there is none."""
    index = torch.arange(seen.shape[-1], device=seen.device)
    before = seen & (index[None, :] < index[:, None])[None]
    return torch.where(before, index, torch.full_like(index, -1)).amax(-1)
