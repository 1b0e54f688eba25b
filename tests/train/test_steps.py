"""The shared optimizer-step core: the same bits as a plain hand-written loop, exact gradient
accumulation, the schedule, stopping and step numbering."""

from __future__ import annotations

import pytest
import torch

from sppd.train.steps import LocalBackend, Step, run_steps


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


DATA = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
TARGET = torch.randn(12, 1, generator=torch.Generator().manual_seed(2))


def mean_loss(model):
    def loss_fn(rows: list[int]):
        loss = torch.nn.functional.mse_loss(model(DATA[rows]), TARGET[rows])
        return loss, {"loss": loss, "rows": len(rows)}

    return loss_fn


def test_same_bits_as_a_plain_loop():
    """What toy pretraining and the toy PRM did before they ran on the core."""
    batches, lrs = [[0, 1, 2], [3, 4, 5, 6], [7, 8]], [0.3, 0.2, 0.1]
    plain = make_model()
    opt = torch.optim.AdamW(plain.parameters(), lr=1.0, weight_decay=0.01)
    for rows, lr in zip(batches, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        loss = torch.nn.functional.mse_loss(plain(DATA[rows]), TARGET[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 0.5)
        opt.step()
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=0.01)
    seen = []
    done = run_steps(
        model,
        opt,
        [Step([rows]) for rows in batches],
        mean_loss(model),
        schedule=lambda s: lrs[s],
        max_grad_norm=0.5,
        on_step=seen.append,
    )
    assert done == 3 and [r.step for r in seen] == [0, 1, 2] and [r.lr for r in seen] == lrs
    assert [r.sums["rows"] for r in seen] == [3, 4, 2] and all(r.grad_norm > 0 for r in seen)
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), model.parameters()))


def test_accumulated_step_equals_one_big_batch():
    """Two micro-batches with summed losses over the step's weight = one batch's mean loss."""

    def sum_loss(model):
        def loss_fn(rows):
            loss = torch.nn.functional.mse_loss(model(DATA[rows]), TARGET[rows], reduction="sum")
            return loss, {"loss_sum": loss}

        return loss_fn

    whole, split = make_model(), make_model()
    for model, step, accum in ((whole, Step([list(range(6))], 6.0), 1), (split, Step([[0, 1], [2, 3, 4, 5]], 6.0), 2)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = []
        run_steps(model, opt, [step], sum_loss(model), backend=LocalBackend(accum), on_step=seen.append)
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(whole.parameters(), split.parameters()))
    assert not torch.equal(whole[0].weight, make_model()[0].weight)


def test_stop_start_step_and_no_schedule():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    done = run_steps(
        model,
        opt,
        iter([Step([[i]]) for i in range(5)]),
        mean_loss(model),
        start_step=7,
        on_step=lambda r: seen.append(r) or r.step == 8,
    )
    assert done == 9 and [r.step for r in seen] == [7, 8]  # numbered from start_step, stopped after 8
    assert [r.lr for r in seen] == [None, None] and opt.param_groups[0]["lr"] == 0.05


def test_micro_batch_count_must_match_the_accumulation():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="2 micro-batches but the backend accumulates 1"):
        run_steps(model, opt, [Step([[0], [1]])], mean_loss(model))
