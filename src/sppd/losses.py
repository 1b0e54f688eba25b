"""Pure loss functions for SFT, sentence-level DPO and step-DPO with a value margin (paper §4.1).

Everything here maps tensors to per-example tensors; the caller reduces (mean over a batch, sum
over micro-batches for gradient accumulation). Nothing here touches a model, an optimizer or a
config, so each formula can be checked against numbers derived by hand.

Shapes: ``B`` batch, ``T`` sequence length, ``V`` vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sppd.types import MarginMode

# Low-precision logits are upcast to fp32 for the log-sum-exp one batch row at a time, so a
# (B, T, V) fp32 copy of bf16 logits (GiBs for a 150k vocabulary) never exists at once.
_FULL_PRECISION = (torch.float32, torch.float64)

# Relative tolerance under which a preference margin is a tie in the reward accuracy (float noise)
TIE_RTOL = 1e-6


def token_logps(
    logits: torch.Tensor,
    target_ids: torch.Tensor,
    source_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Log-probability of ``target_ids`` under the softmax of selected logit rows. No shift here.

    Args:
        logits: (B, T, V) unnormalised scores.
        target_ids: (B, N) token ids to score.
        source_index: (B, N) index into T of the logit row that predicts each target; ``None``
            means ``N == T`` and row ``t`` predicts target ``t``. Prefix sharing needs this because
            one prefix row predicts the first token of both the chosen and the rejected step.

    Returns:
        (B, N) log p(target | row), fp32 (or fp64 for fp64 logits).
    """
    batch_size, seq_len, vocab_size = logits.shape
    if source_index is None:
        source_index = torch.arange(seq_len, device=logits.device).expand(batch_size, -1)
    if logits.dtype in _FULL_PRECISION:
        lse = torch.logsumexp(logits, dim=-1)
    else:
        lse = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
    # Index the flattened (B, T*V) view so only the N picked scalars are gathered, not N rows.
    flat_index = source_index * vocab_size + target_ids
    picked = logits.reshape(batch_size, seq_len * vocab_size).gather(1, flat_index)
    return picked.to(lse.dtype) - lse.gather(1, source_index)


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of the masked tokens of each sequence, with the causal shift.

    Token ``labels[:, t]`` is predicted by ``logits[:, t - 1]``, so ``loss_mask[:, 0]`` is
    ignored (nothing predicts the first token). Mask the prompt out and keep the response in.

    Args:
        logits: (B, T, V) model outputs for ``labels`` as input ids.
        labels: (B, T) token ids (any value where the mask is 0, e.g. padding or -100).
        loss_mask: (B, T) 1/True where the token is scored.

    Returns:
        ``(sum_logps (B,), n_tokens (B,))``; ``n_tokens`` is the float count of scored tokens.
    """
    mask = loss_mask[:, 1:].to(torch.bool)
    # Masked labels may be -100 or padding; replace them so the gather stays in range.
    targets = labels[:, 1:].masked_fill(~mask, 0)
    # Rows 0..T-2 predict tokens 1..T-1; an index (not a slice) keeps `logits` a reshapeable view.
    source_index = torch.arange(labels.shape[1] - 1, device=logits.device).expand(labels.shape[0], -1)
    per_token_logps = token_logps(logits, targets, source_index)
    sum_logps = (per_token_logps * mask).sum(dim=-1)
    return sum_logps, mask.sum(dim=-1).to(sum_logps.dtype)


@dataclass(frozen=True)
class SFTLossOutput:
    """Per-example SFT negative log-likelihood on response tokens (all fields (B,))."""

    losses: torch.Tensor  # mean NLL per response token; 0 for an example with no scored token
    nll_sums: torch.Tensor  # summed NLL, for callers that normalise by tokens across micro-batches
    n_tokens: torch.Tensor  # scored tokens per example (float)


def sft_nll(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> SFTLossOutput:
    """SFT loss: -sum_t log pi(y_t | x, y_<t) over response tokens only (§4.3, PRM-SFT).

    Args:
        logits: (B, T, V); labels: (B, T); loss_mask: (B, T), 1 on response tokens.
    """
    sum_logps, n_tokens = sequence_logps(logits, labels, loss_mask)
    nll_sums = -sum_logps
    return SFTLossOutput(losses=nll_sums / n_tokens.clamp(min=1.0), nll_sums=nll_sums, n_tokens=n_tokens)


def step_margin(
    mode: MarginMode | str,
    values_chosen: torch.Tensor,
    values_rejected: torch.Tensor,
    gamma: float,
    fixed_margin: float = 0.0,
) -> torch.Tensor:
    """Per-pair margin m for :func:`preference_loss`.

    Args:
        mode: a :class:`sppd.types.MarginMode` (or its string value).
        values_chosen: (B,) V(s_{t+1}^w), the value (PRM score) of the state after the chosen step.
        values_rejected: (B,) V(s_{t+1}^l), same for the rejected step.
        gamma: γ of Eq. 5, used by ``dynamic``.
        fixed_margin: the constant used by ``fixed``.

    Returns:
        (B,) margin, same dtype as ``values_chosen``.
    """
    mode = MarginMode(mode)
    if mode is MarginMode.DYNAMIC:
        return gamma * (values_chosen - values_rejected)  # Eq. 5: γ(V*(s^w) − V*(s^l))
    if mode is MarginMode.FIXED:
        return torch.full_like(values_chosen, fixed_margin)
    return torch.zeros_like(values_chosen)


@dataclass(frozen=True)
class PreferenceLossOutput:
    """Per-example preference loss and logging statistics (all fields (B,)).

    The rewards are detached: they are for logging, and keeping them out of the graph means a
    logger holding them keeps no activations alive.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor  # β·(log π(y_w) − log π_ref(y_w))
    rejected_rewards: torch.Tensor  # β·(log π(y_l) − log π_ref(y_l))
    reward_accuracies: torch.Tensor  # 1.0 where chosen reward > rejected reward, 0.5 on a tie, else 0.0
    margins: torch.Tensor  # chosen_rewards − rejected_rewards (= β·h, before the value margin)


def chosen_nll(policy_chosen_logps: torch.Tensor, chosen_lens: torch.Tensor) -> torch.Tensor:
    """(B,) per-token NLL of each chosen continuation: ``−log π(y_w) / |y_w|``.

    The optional ``train.chosen_nll_weight`` term (Pang et al. 2024, "Iterative Reasoning
    Preference Optimization"; not in the SPPD paper): DPO can lower the chosen continuation's
    likelihood along with the rejected one, and this term holds it up.
    """
    if torch.any(chosen_lens <= 0):
        raise ValueError("chosen_nll: every chosen continuation needs at least one token")
    return -policy_chosen_logps / chosen_lens.to(policy_chosen_logps.dtype)


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    margin: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """Sigmoid DPO / step-DPO loss with an optional per-pair margin and label smoothing.

    With ``h = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))`` (Eq. 4) and
    ``z = β·h − m``, the loss is ``−log σ(z)`` (Eq. 5 for ``m = γ(V(s^w) − V(s^l))``; sentence-level
    DPO and plain Step-DPO for ``m = 0``). Label smoothing ε gives the conservative-DPO form used by
    TRL: ``−(1 − ε)·log σ(z) − ε·log σ(−z)``.

    Args:
        policy_chosen_logps, policy_rejected_logps: (B,) summed log-probs of the chosen / rejected
            continuation under the policy.
        ref_chosen_logps, ref_rejected_logps: (B,) same under the frozen reference model.
        beta: β, the KL strength.
        margin: (B,) m from :func:`step_margin`, or ``None`` for m = 0.
        label_smoothing: ε in [0, 0.5], the assumed probability that a pair's label is flipped.

    Returns:
        :class:`PreferenceLossOutput` with per-example ``losses`` (B,).
    """
    if not 0.0 <= label_smoothing <= 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5], got {label_smoothing}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    logits = beta * (chosen_logratios - rejected_logratios)  # β·h (Eq. 4)
    if margin is not None:
        logits = logits - margin  # β·h − γ(V(s^w) − V(s^l)) (Eq. 5)
    # logsigmoid rather than log(sigmoid(.)): stays finite for |z| in the hundreds.
    losses = -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    chosen_rewards = beta * chosen_logratios.detach()
    rejected_rewards = beta * rejected_logratios.detach()
    margins = chosen_rewards - rejected_rewards
    # Reference log-probs computed in another batch order differ from the policy's by float noise
    # (~1e-7), so the exact ties of step 1 (policy == reference) would read as random wins: a
    # margin within TIE_RTOL of the log-probs it came from counts as a tie, worth half.
    logps = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    tie = margins.abs() <= TIE_RTOL * beta * sum(x.detach().abs() for x in logps)
    return PreferenceLossOutput(
        losses=losses,
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        reward_accuracies=(margins > 0).to(margins.dtype).masked_fill(tie, 0.5),
        margins=margins,
    )
