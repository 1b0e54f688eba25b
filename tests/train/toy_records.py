"""Training records built from the toy world for the training tests (no sampling, no PRM).

Correct solutions come from ``sppd.toy.world.solve``; a wrong step is the correct one with its
result off by one, so every pair has a real, learnable preference.
"""

from __future__ import annotations

import random

from sppd.io import StageDir
from sppd.records import PreferencePair, SFTExample, StepPair
from sppd.toy.config import ToyWorldConfig
from sppd.toy.world import STEP_DELIMITER, answer_line, sample_questions, solve

WORLD = ToyWorldConfig(min_ops=2, max_ops=3)


def _lines(question: str, wrong_at: int | None = None) -> list[str]:
    """Solution lines (steps then the answer line); ``wrong_at`` makes that step's result +1."""
    steps = solve(question)
    lines, answer = [], steps[-1].result
    for k, step in enumerate(steps):
        line = step.line(k + 1)
        if k == wrong_at:
            line = line.replace(f"={step.result}", f"={step.result + 1}", 1)
            answer = None  # a wrong step makes the final answer wrong
        lines.append(line)
    return lines + [answer_line(answer if answer is not None else steps[-1].result + 1)]


def sft_records(n: int, seed: int = 0) -> list[SFTExample]:
    out = []
    for i, q in enumerate(sample_questions(WORLD, "train", n, seed, unique=False)):
        lines = _lines(q)
        out.append(
            SFTExample(id=f"sft-{i}", problem_id=f"p{i}", prompt=q, completion=STEP_DELIMITER.join(lines), steps=lines)
        )
    return out


def dpo_records(n: int, seed: int = 0) -> list[PreferencePair]:
    out = []
    for i, q in enumerate(sample_questions(WORLD, "train", n, seed, unique=False)):
        good, bad = _lines(q), _lines(q, wrong_at=0)
        out.append(
            PreferencePair(
                id=f"dpo-{i}",
                problem_id=f"p{i}",
                prompt=q,
                chosen=STEP_DELIMITER.join(good),
                rejected=STEP_DELIMITER.join(bad),
                chosen_steps=good,
                rejected_steps=bad,
                chosen_value=0.9,
                rejected_value=0.1,
            )
        )
    return out


def step_pair_records(n: int, seed: int = 0) -> list[StepPair]:
    """Pairs at a random depth; the last line of a solution is a terminal step."""
    rng = random.Random(seed)
    out = []
    for i, q in enumerate(sample_questions(WORLD, "train", n, seed, unique=False)):
        good = _lines(q)
        depth = rng.randrange(len(good) - 1)  # a step line, never the answer line ...
        if i % 4 == 3:
            depth = len(good) - 1  # ... except every fourth pair: the (terminal) answer line
        bad_line = _lines(q, wrong_at=depth)[depth] if depth < len(good) - 1 else answer_line("0")
        prefix = good[:depth]
        terminal = depth == len(good) - 1
        out.append(
            StepPair(
                id=f"sp-{i}",
                problem_id=f"p{i}",
                prompt=q,
                initial_reason_steps="".join(line + STEP_DELIMITER for line in prefix),
                prefix_steps=prefix,
                chosen=good[depth],
                rejected=bad_line,
                chosen_value=round(rng.uniform(0.6, 1.0), 3),
                rejected_value=round(rng.uniform(0.0, 0.4), 3),
                chosen_terminal=terminal,
                rejected_terminal=terminal,
                depth=depth,
            )
        )
    return out


RECORDS = {"sft": sft_records, "dpo": dpo_records, "step_dpo": step_pair_records}


def write_records(folder, records) -> StageDir:
    out = StageDir(folder)
    out.write_shard("data", 0, (r.to_dict() for r in records))
    return out


def make_run_config(tmp_path, objective: str, init, n: int = 8, name: str = "run", **train):
    """A RunConfig training ``objective`` on ``n`` fresh toy records, writing under ``tmp_path/name``."""
    from sppd.settings import PromptConfig, RunConfig, TrainConfig
    from sppd.types import ChatTemplateMode

    data = tmp_path / f"data-{objective}-{n}"
    if not data.exists():
        write_records(data, RECORDS[objective](n))
    settings = dict(
        objective=objective,
        data=str(data),
        init=str(init),
        batch_size=4,
        lr=1e-3,
        epochs=1,
        warmup_ratio=0.0,
        log_every=1,
        seed=0,
    )
    settings.update(train)
    return RunConfig(
        run_dir=str(tmp_path / name),
        threads=2,
        prompt=PromptConfig(template="Q: {question}\n", chat_template=ChatTemplateMode.NEVER),
        train=TrainConfig(**settings),
    )
