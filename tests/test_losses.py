"""Loss functions against numbers derived by hand, and the zero-margin loss against TRL's DPO.

Shared worked example (used by several tests):
    beta = 0.1
    policy chosen / rejected logps = -10, -14;  reference chosen / rejected = -12, -13
    chosen logratio   = -10 - (-12) =  2   -> chosen reward   = 0.1 * 2  =  0.2
    rejected logratio = -14 - (-13) = -1   -> rejected reward = 0.1 * -1 = -0.1
    h = 2 - (-1) = 3;  beta * h = 0.3 (= reward margin 0.2 - (-0.1))
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from sppd.losses import (
    chosen_nll,
    preference_loss,
    sequence_logps,
    sft_nll,
    step_margin,
    token_logps,
)
from sppd.types import MarginMode

LN2 = math.log(2.0)
BETA = 0.1


def example_logps(requires_grad: bool = False) -> tuple[torch.Tensor, ...]:
    """The shared worked example as (1,) tensors: policy chosen, policy rejected, ref chosen, ref rejected."""
    values = (-10.0, -14.0, -12.0, -13.0)
    return tuple(torch.tensor([v], dtype=torch.float64, requires_grad=requires_grad) for v in values)


# --- token / sequence log-probs and SFT --------------------------------------------------------


def hand_logits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One sequence, T=3, V=2.
    row 0 logits [0, 0]      -> p = (1/2, 1/2)
    row 1 logits [ln 3, 0]   -> p = (3/4, 1/4)
    row 2 logits [50, -50]   -> predicts nothing (last row); would dominate the sum if misused
    labels [1, 0, 1], loss_mask [1, 1, 1] (mask[0] must be ignored: nothing predicts token 0)
    label 1 (=0) from row 0: ln(1/2) = -ln 2;  label 2 (=1) from row 1: ln(1/4) = -2 ln 2
    sum = -3 ln 2 = -2.0794415, n_tokens = 2
    """
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [50.0, -50.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0, 1]])
    loss_mask = torch.tensor([[1, 1, 1]])
    return logits, labels, loss_mask


def test_sequence_logps_shift_by_hand():
    logits, labels, loss_mask = hand_logits()
    sum_logps, n_tokens = sequence_logps(logits, labels, loss_mask)
    torch.testing.assert_close(sum_logps, torch.tensor([-3 * LN2], dtype=torch.float64))
    assert n_tokens.tolist() == [2.0]


def test_sequence_logps_ignores_masked_labels_like_minus_100():
    logits, _, _ = hand_logits()
    # Only label 2 scored: ln(1/4) = -2 ln 2; label 1 is -100 (masked) and must not be gathered.
    sum_logps, n_tokens = sequence_logps(logits, torch.tensor([[-100, -100, 1]]), torch.tensor([[0, 0, 1]]))
    torch.testing.assert_close(sum_logps, torch.tensor([-2 * LN2], dtype=torch.float64))
    assert n_tokens.tolist() == [1.0]


def test_token_logps_with_source_index():
    logits, _, _ = hand_logits()
    # Targets (1, 0) both read from row 1 (p = 3/4, 1/4): ln(1/4) = -1.3862944, ln(3/4) = -0.2876821.
    out = token_logps(logits, torch.tensor([[1, 0]]), source_index=torch.tensor([[1, 1]]))
    torch.testing.assert_close(out, torch.tensor([[math.log(0.25), math.log(0.75)]], dtype=torch.float64))


def test_token_logps_bf16_logits_upcast():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11) * 4
    targets = torch.randint(0, 11, (2, 5))
    out_bf16 = token_logps(logits.to(torch.bfloat16), targets)
    assert out_bf16.dtype == torch.float32
    expected = torch.log_softmax(logits.to(torch.bfloat16).float(), -1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(out_bf16, expected, atol=1e-5, rtol=0)


def test_sft_nll_by_hand():
    logits, labels, _ = hand_logits()
    logits = torch.cat([logits, logits])
    labels = torch.cat([labels, labels])
    # Example 0: both response tokens -> NLL sum 3 ln 2 = 2.0794415, mean 1.5 ln 2 = 1.0397208.
    # Example 1: prompt only (no scored token) -> 0, not NaN.
    loss_mask = torch.tensor([[0, 1, 1], [1, 0, 0]])
    out = sft_nll(logits, labels, loss_mask)
    torch.testing.assert_close(out.losses, torch.tensor([1.5 * LN2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out.nll_sums, torch.tensor([3 * LN2, 0.0], dtype=torch.float64))
    assert out.n_tokens.tolist() == [2.0, 0.0]


# --- margins ----------------------------------------------------------------------------------


def test_step_margin_each_mode_by_hand():
    v_chosen = torch.tensor([0.9, 0.6])
    v_rejected = torch.tensor([0.2, 0.6])
    # dynamic: gamma * (Vw - Vl) = 0.5 * (0.9 - 0.2) = 0.35 ; 0.5 * 0 = 0
    dynamic = step_margin(MarginMode.DYNAMIC, v_chosen, v_rejected, gamma=0.5, fixed_margin=9.0)
    torch.testing.assert_close(dynamic, torch.tensor([0.35, 0.0]))
    # fixed: the constant, whatever the values
    fixed = step_margin("fixed", v_chosen, v_rejected, gamma=0.5, fixed_margin=0.3)
    torch.testing.assert_close(fixed, torch.tensor([0.3, 0.3]))
    # none: zero
    none = step_margin("none", v_chosen, v_rejected, gamma=0.5, fixed_margin=0.3)
    torch.testing.assert_close(none, torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError):
        step_margin("adaptive", v_chosen, v_rejected, gamma=0.5)


# --- preference loss --------------------------------------------------------------------------


def test_dpo_loss_without_margin_by_hand():
    out = preference_loss(*example_logps(), beta=BETA)
    # z = beta*h = 0.3; -log sigma(0.3) = ln(1 + e^-0.3) = ln(1 + 0.7408182) = ln 1.7408182 = 0.5543552
    torch.testing.assert_close(out.losses, torch.tensor([0.5543552444685271], dtype=torch.float64))
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([0.2], dtype=torch.float64))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.1], dtype=torch.float64))
    torch.testing.assert_close(out.margins, torch.tensor([0.3], dtype=torch.float64))
    assert out.reward_accuracies.tolist() == [1.0]


def test_step_dpo_dynamic_margin_by_hand():
    # m = gamma (Vw - Vl) = 0.5 * (0.9 - 0.2) = 0.35 (Eq. 5)
    margin = step_margin("dynamic", torch.tensor([0.9]), torch.tensor([0.2]), gamma=0.5).double()
    out = preference_loss(*example_logps(), beta=BETA, margin=margin)
    # z = 0.3 - 0.35 = -0.05; -log sigma(-0.05) = ln(1 + e^0.05) = ln(1 + 1.0512711)
    #   = ln 2.0512711 = 0.7184596
    torch.testing.assert_close(out.losses, torch.tensor([0.7184596480132863], dtype=torch.float64))
    # The margin changes the loss, not the implicit rewards or their accuracy.
    torch.testing.assert_close(out.margins, torch.tensor([0.3], dtype=torch.float64))
    assert out.reward_accuracies.tolist() == [1.0]


def test_step_dpo_fixed_margin_by_hand():
    margin = step_margin("fixed", torch.zeros(1), torch.zeros(1), gamma=0.0, fixed_margin=0.3).double()
    out = preference_loss(*example_logps(), beta=BETA, margin=margin)
    # z = 0.3 - 0.3 = 0; -log sigma(0) = ln 2 = 0.6931472
    torch.testing.assert_close(out.losses, torch.tensor([LN2], dtype=torch.float64))


def test_none_margin_equals_no_margin():
    margin = step_margin("none", torch.tensor([0.9]), torch.tensor([0.2]), gamma=0.5).double()
    with_zero = preference_loss(*example_logps(), beta=BETA, margin=margin).losses
    torch.testing.assert_close(with_zero, preference_loss(*example_logps(), beta=BETA).losses)


def test_label_smoothing_by_hand():
    out = preference_loss(*example_logps(), beta=BETA, label_smoothing=0.1)
    # z = 0.3: -(0.9) log sigma(0.3) - 0.1 log sigma(-0.3)
    #   = 0.9 * 0.5543552 + 0.1 * ln(1 + e^0.3) = 0.9 * 0.5543552 + 0.1 * 0.8543552
    #   = 0.4989197 + 0.0854355 = 0.5843552  (identity: softplus(-z) + eps*z = 0.5543552 + 0.03)
    torch.testing.assert_close(out.losses, torch.tensor([0.5843552444685272], dtype=torch.float64))
    with pytest.raises(ValueError, match="label_smoothing"):
        preference_loss(*example_logps(), beta=BETA, label_smoothing=0.6)


def test_rewards_and_accuracies_per_example():
    policy_chosen = torch.tensor([-10.0, -20.0, -5.0])
    policy_rejected = torch.tensor([-14.0, -10.0, -5.0])
    ref_chosen = torch.tensor([-12.0, -18.0, -5.0])
    ref_rejected = torch.tensor([-13.0, -11.0, -5.0])
    out = preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5)
    # chosen rewards   0.5 * (2, -2, 0) = (1, -1, 0);  rejected 0.5 * (-1, 1, 0) = (-0.5, 0.5, 0)
    torch.testing.assert_close(out.chosen_rewards, torch.tensor([1.0, -1.0, 0.0]))
    torch.testing.assert_close(out.rejected_rewards, torch.tensor([-0.5, 0.5, 0.0]))
    torch.testing.assert_close(out.margins, torch.tensor([1.5, -1.5, 0.0]))
    assert out.reward_accuracies.tolist() == [1.0, 0.0, 0.5]  # a tie counts half
    # losses per example: softplus(-1.5) = 0.2014133, softplus(1.5) = 1.7014133, ln 2 = 0.6931472
    torch.testing.assert_close(out.losses, torch.tensor([0.2014133, 1.7014133, LN2]), atol=1e-6, rtol=0)
    assert not out.chosen_rewards.requires_grad


def test_reward_accuracy_counts_float_noise_ties_as_half():
    """Step 1: policy == reference, but the reference log-probs came from another batch order."""
    d = torch.float64
    policy_chosen = torch.tensor([-10.0 + 2e-7, -9.99, -10.0, -10.0], dtype=d)
    policy_rejected = torch.tensor([-10.0, -10.0, -9.99, -10.0], dtype=d)
    ref = torch.full((4,), -10.0, dtype=d)
    out = preference_loss(policy_chosen, policy_rejected, ref, ref, beta=0.5)
    # margins 0.5 * (2e-7, 0.01, -0.01, 0) = (1e-7, 5e-3, -5e-3, 0); the tie tolerance is
    # TIE_RTOL * beta * (sum of |log-probs|) = 1e-6 * 0.5 * ~40 = ~2e-5: noise and the exact tie
    # count half, a real 5e-3 difference either way counts whole
    torch.testing.assert_close(out.margins, torch.tensor([1e-7, 5e-3, -5e-3, 0.0], dtype=d), atol=1e-12, rtol=0)
    assert out.reward_accuracies.tolist() == [0.5, 1.0, 0.0, 0.5]


def test_loss_is_finite_for_extreme_logits():
    # z = 0.1 * (0 - 10000) = -1000: -log sigma(-1000) = 1000 (a naive log(sigmoid) gives inf).
    zero = torch.zeros(1)
    out = preference_loss(zero, zero + 10000.0, zero, zero, beta=0.1)
    torch.testing.assert_close(out.losses, torch.tensor([1000.0]))


def test_gradient_directions():
    policy_chosen, policy_rejected, ref_chosen, ref_rejected = example_logps(requires_grad=True)
    margin = torch.tensor([0.35], dtype=torch.float64, requires_grad=True)
    out = preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, BETA, margin=margin)
    out.losses.sum().backward()
    # z = -0.05. d loss / d m = sigma(-z) = sigma(0.05) = 0.5124974 > 0: a larger margin costs more.
    torch.testing.assert_close(margin.grad, torch.tensor([0.5124973964842103], dtype=torch.float64))
    # d loss / d policy_chosen = -beta sigma(-z) = -0.0512497 (raise chosen -> lower loss);
    # d loss / d policy_rejected = +0.0512497.
    torch.testing.assert_close(policy_chosen.grad, torch.tensor([-0.05124973964842103], dtype=torch.float64))
    torch.testing.assert_close(policy_rejected.grad, torch.tensor([0.05124973964842103], dtype=torch.float64))


def test_larger_gamma_gap_increases_loss():
    losses = []
    for gamma in (0.0, 0.5, 1.0, 2.0):
        margin = step_margin("dynamic", torch.tensor([0.9]), torch.tensor([0.2]), gamma=gamma).double()
        losses.append(preference_loss(*example_logps(), beta=BETA, margin=margin).losses.item())
    assert losses == sorted(losses) and len(set(losses)) == 4


# --- equality with TRL ------------------------------------------------------------------------


def trl_sigmoid_dpo_losses(chosen, rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Per-example loss from TRL 1.16's own code: ``DPOTrainer._compute_loss`` with loss_type
    "sigmoid". TRL has no standalone loss function, so the method runs unbound on a minimal
    stand-in for the trainer and a fake model whose per-token log-probs sum to the given values
    (precomputed reference log-probs, as TRL's ``precompute_ref_log_probs``). One call per
    example because the method returns the batch mean."""
    from trl.trainer.dpo_trainer import DPOTrainer

    identity = lambda t: t  # noqa: E731 - single-process gathers
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity)
    losses = []
    for i in range(chosen.shape[0]):
        seq_logps = torch.zeros(2, 3, dtype=chosen.dtype)  # rows [chosen, rejected]; 3 = T - 1
        seq_logps[0, 0], seq_logps[1, 0] = chosen[i], rejected[i]
        outputs = SimpleNamespace(
            log_probs=seq_logps,
            entropy=torch.zeros(2, 3),
            mean_logits=torch.zeros(2, 3),
            is_top1=torch.zeros(2, 3, dtype=torch.bool),
        )
        trainer = SimpleNamespace(
            model=SimpleNamespace(training=True),
            accelerator=accelerator,
            aux_loss_enabled=False,
            ld_alpha=None,
            precompute_ref_logps=True,
            f_divergence_type="reverse_kl",
            loss_types=["sigmoid"],
            loss_weights=[1.0],
            beta=beta,
            label_smoothing=0.0,
            use_weighting=False,
            _metrics={"train": defaultdict(list)},
            _total_train_tokens=0,
            _tp_size=1,
        )
        inputs = {
            "input_ids": torch.ones(2, 4, dtype=torch.long),
            "attention_mask": torch.ones(2, 4, dtype=torch.long),
            "completion_mask": torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]]),
            "ref_chosen_logps": ref_chosen[i : i + 1],
            "ref_rejected_logps": ref_rejected[i : i + 1],
        }
        losses.append(
            DPOTrainer._compute_loss(trainer, lambda _outputs=outputs, **_: _outputs, inputs, return_outputs=False)
        )
    return torch.stack(losses)


def test_zero_margin_equals_trl_sigmoid_dpo():
    pytest.importorskip("trl")
    torch.manual_seed(0)
    chosen, rejected, ref_chosen, ref_rejected = -20 * torch.rand(4, 6, dtype=torch.float64)
    expected = trl_sigmoid_dpo_losses(chosen, rejected, ref_chosen, ref_rejected, beta=0.3)
    zero = torch.zeros(6, dtype=torch.float64)
    for margin in (None, zero):
        ours = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3, margin=margin).losses
        torch.testing.assert_close(ours, expected, atol=1e-12, rtol=0)
    # ...and a non-zero margin does differ from TRL (the comparison can fail).
    shifted = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3, margin=zero + 0.1).losses
    assert (shifted - expected).abs().min() > 1e-3


def test_chosen_nll_by_hand():
    # -log pi(y_w) / |y_w|: (-(-6) / 3, -(-2) / 4)
    assert chosen_nll(torch.tensor([-6.0, -2.0]), torch.tensor([3.0, 4.0])).tolist() == [2.0, 0.5]
    with pytest.raises(ValueError, match="at least one token"):
        chosen_nll(torch.tensor([-1.0]), torch.tensor([0.0]))
