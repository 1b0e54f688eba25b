"""The training objectives: how one micro-batch becomes a loss and logging sums.

Each objective is an :class:`ObjectiveSpec` in :data:`OBJECTIVES`: which records it reads, how
they are tokenized and collated, whether it needs reference log-probs, and a ``loss`` function
calling the pure losses of :mod:`sppd.losses`. The training loop only sees the spec, so a new
objective is a new entry here, not a branch in the loop.

Normalisation contract (what makes gradient accumulation and multi-process training exact): a
loss function returns ``loss_sum``, the SUM over its examples of ``weight_i * loss_i``, where
``weight`` is the spec's per-example weight. The loop divides by the total weight of the whole
optimizer step (all micro-batches, all processes). For pairs the weight is 1, so the step loss
is the mean over pairs. For SFT the weight is the number of completion tokens, so the step loss
is the mean NLL over every completion token of the step (a token-level mean, like a single big
batch would give), independent of how the step is cut into micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sppd.data.collate import PairBatch, SFTBatch, collate_pairs, collate_sft
from sppd.data.tokenize import tokenize_preference_pairs, tokenize_sft, tokenize_step_pairs
from sppd.losses import chosen_nll, preference_loss, sequence_logps, sft_nll, step_margin
from sppd.records import PreferencePair, SFTExample, StepPair
from sppd.settings import TrainConfig
from sppd.train.prefix_sharing import packed_pair_logps
from sppd.types import MarginMode, Objective


@dataclass(frozen=True)
class ObjectiveOutput:
    """``loss_sum``: scalar with graph, sum of weight_i * loss_i; ``metric_sums``: detached
    scalar sums over the micro-batch's examples (the loop divides by the example count)."""

    loss_sum: torch.Tensor
    metric_sums: dict[str, torch.Tensor]


def _forward_logits(model, input_ids, attention_mask, first_kept: int) -> torch.Tensor:
    """(N, T - first_kept, V) logits; rows before ``first_kept`` only see the prompt and predict
    nothing scored, so their lm_head projection is skipped."""
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        use_cache=False,
        logits_to_keep=input_ids.shape[1] - first_kept,
    ).logits


def pair_logps(model, batch: PairBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of each pair's chosen and rejected completion, ``((B,), (B,))``.

    Same function for the policy and the reference cache, so at step 0 the two agree exactly.
    """
    if batch.packed is not None:
        out = packed_pair_logps(model, batch.packed)
        return out.chosen_logps, out.rejected_logps
    rows = batch.rows
    first_kept = int(rows.prompt_lens.min()) - 1
    logits = _forward_logits(model, rows.input_ids, rows.attention_mask, first_kept)
    sum_logps, _ = sequence_logps(logits, rows.input_ids[:, first_kept:], rows.loss_mask[:, first_kept:])
    return sum_logps[: batch.size], sum_logps[batch.size :]


def sft_loss(model, batch: SFTBatch, cfg: TrainConfig) -> ObjectiveOutput:
    """Summed NLL over completion tokens (weight = tokens, see the module docstring)."""
    first_kept = int(batch.prompt_lens.min()) - 1
    logits = _forward_logits(model, batch.input_ids, batch.attention_mask, first_kept)
    out = sft_nll(logits, batch.input_ids[:, first_kept:], batch.loss_mask[:, first_kept:])
    return ObjectiveOutput(loss_sum=out.nll_sums.sum(), metric_sums={"completion_tokens": out.n_tokens.sum().detach()})


def _preference_output(model, batch: PairBatch, cfg: TrainConfig, margin: torch.Tensor | None) -> ObjectiveOutput:
    if batch.ref_chosen_logps is None:
        raise ValueError("preference batches need reference log-probs (PairBatch.with_ref)")
    chosen_logps, rejected_logps = pair_logps(model, batch)
    out = preference_loss(
        chosen_logps,
        rejected_logps,
        batch.ref_chosen_logps.to(chosen_logps.dtype),
        batch.ref_rejected_logps.to(chosen_logps.dtype),
        beta=cfg.beta,
        margin=margin,
        label_smoothing=cfg.label_smoothing,
    )
    metrics = {
        "rewards/chosen": out.chosen_rewards.sum(),
        "rewards/rejected": out.rejected_rewards.sum(),
        "rewards/accuracy": out.reward_accuracies.sum(),
        "rewards/margin": out.margins.sum(),
        "logps/chosen": chosen_logps.detach().sum(),
        "logps/rejected": rejected_logps.detach().sum(),
    }
    if margin is not None:
        metrics["value_margin"] = margin.detach().sum()
    losses = out.losses
    if cfg.chosen_nll_weight:
        nll = chosen_nll(chosen_logps, batch.chosen_lens.to(chosen_logps.device))
        metrics["chosen_nll"] = nll.detach().sum()
        losses = losses + cfg.chosen_nll_weight * nll
    return ObjectiveOutput(loss_sum=losses.sum(), metric_sums=metrics)


def dpo_loss(model, batch: PairBatch, cfg: TrainConfig) -> ObjectiveOutput:
    """Sentence-level sigmoid DPO (DPO-PRM, §4.3): no margin."""
    return _preference_output(model, batch, cfg, margin=None)


def step_dpo_loss(model, batch: PairBatch, cfg: TrainConfig) -> ObjectiveOutput:
    """Step-DPO with the value margin of Eq. 5 (dynamic), a constant (fixed) or none."""
    mode = MarginMode(cfg.margin)
    margin = None
    if mode is not MarginMode.NONE:
        margin = step_margin(mode, batch.chosen_values, batch.rejected_values, cfg.gamma, cfg.fixed_margin)
    return _preference_output(model, batch, cfg, margin=margin)


@dataclass(frozen=True)
class ObjectiveSpec:
    """Everything the loop and the train stage need to know about one objective."""

    name: Objective
    record_cls: type  # record class of the data folder
    data_subdir: str  # default data folder: <run_dir>/data/<data_subdir>
    tokenize: Callable  # (records, tokenizer, TokenizeSettings) -> (examples, TokenizeReport)
    collate: Callable  # (examples, pad_id, prefix_sharing) -> batch
    loss: Callable[..., ObjectiveOutput]  # (model, batch, TrainConfig) -> ObjectiveOutput
    weight: Callable  # example -> float, its share of the step's normaliser
    needs_ref: bool  # batches need reference log-probs (cached before training)


OBJECTIVES: dict[Objective, ObjectiveSpec] = {
    Objective.SFT: ObjectiveSpec(
        name=Objective.SFT,
        record_cls=SFTExample,
        data_subdir="sft",
        tokenize=tokenize_sft,
        collate=lambda examples, pad_id, prefix_sharing: collate_sft(examples, pad_id),
        loss=sft_loss,
        weight=lambda e: float(len(e.completion_ids)),
        needs_ref=False,
    ),
    Objective.DPO: ObjectiveSpec(
        name=Objective.DPO,
        record_cls=PreferencePair,
        data_subdir="dpo",
        tokenize=tokenize_preference_pairs,
        # Whole trajectories share only a short prompt: two plain rows beat a T^2 packed mask.
        collate=lambda examples, pad_id, prefix_sharing: collate_pairs(examples, pad_id, prefix_sharing=False),
        loss=dpo_loss,
        weight=lambda e: 1.0,
        needs_ref=True,
    ),
    Objective.STEP_DPO: ObjectiveSpec(
        name=Objective.STEP_DPO,
        record_cls=StepPair,
        data_subdir="step_pairs",
        tokenize=tokenize_step_pairs,
        collate=collate_pairs,
        loss=step_dpo_loss,
        weight=lambda e: 1.0,
        needs_ref=True,
    ),
}


def get_objective(name: Objective | str) -> ObjectiveSpec:
    """The spec of ``name`` (``sft``, ``dpo`` or ``step_dpo``)."""
    try:
        return OBJECTIVES[Objective(str(name))]
    except ValueError:
        raise ValueError(f"unknown objective {name!r}; known: {', '.join(o.value for o in OBJECTIVES)}") from None
