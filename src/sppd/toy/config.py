"""The toy world's settings that the config schema needs: problem shapes, model size, pretraining.

Plain dataclasses importing nothing heavy (no torch, no transformers), so that loading a config
(``sppd.settings``, ``sppd show-config``) stays quick; the code that uses them lives in
``sppd.toy.world``, ``sppd.toy.model`` and ``sppd.toy.pretrain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sppd.digest import runtime
from sppd.types import ToyErrorModel

OPS = "+-*"


@dataclass
class ToyWorldConfig:
    """Shape of the toy problems and of the noise in the pretraining corpus."""

    min_ops: int = 2  # fewest operations in a question
    max_ops: int = 4  # most operations in a question
    operand_min: int = 1  # smallest operand (inclusive, >= 0)
    operand_max: int = 9  # largest operand (inclusive)
    ops: str = OPS  # operators questions may use: a non-empty subset of "+-*"
    max_factors: int = 2  # most factors per product term; 2 forbids a*b*c (2-digit x 1-digit is slow to learn)
    test_fraction: float = 0.1  # share of the question space held out as the test split (by hash)
    val_fraction: float = 0.05  # share held out as the validation split (by hash; model selection)
    corrupt_hard_rate: float = 0.6  # P(corpus solution errs at a hard step | no error yet)
    corrupt_easy_rate: float = 0.02  # P(corpus solution errs at any other step | no error yet)
    hard_product_min: int = 30  # a product >= this is hard; its slip: tens digit +1 (c+10)
    hard_borrow: bool = False  # a borrowing subtraction is hard; its slip: borrow forgotten (c+10)
    hard_carry: bool = False  # a carrying addition is hard; its slip: carry dropped (c-10)
    hard_negative: bool = True  # a subtraction crossing below zero is hard; its slip: sign dropped (-c)
    # v1: the one slip per step named above; v2: any of several slips, both directions (``world.slip_candidates``).
    # Left out of the base-model hash at v1, so existing cached models keep their names.
    error_model: ToyErrorModel = ToyErrorModel.V1
    # Added with v2 (0 = off, the v1 corpus): carrying additions and borrowing subtractions that are not
    # hard err at this rate, so a correct step followed by such steps has a value strictly below 1.
    corrupt_medium_rate: float = 0.0
    # Share of corpus step lines written without the rewritten state: correct, but later steps must
    # then find the state in earlier lines, so two correct sibling steps can differ in value.
    terse_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}")
        if not 0 <= self.operand_min <= self.operand_max:
            raise ValueError(f"need 0 <= operand_min <= operand_max, got {self.operand_min}, {self.operand_max}")
        if not self.ops or set(self.ops) - set(OPS):
            raise ValueError(f"ops must be a non-empty subset of {OPS!r}, got {self.ops!r}")
        if self.max_factors < 2:
            raise ValueError(f"max_factors must be >= 2, got {self.max_factors}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0.0 <= self.val_fraction < 1.0 - self.test_fraction:
            raise ValueError(f"val_fraction must be in [0, 1 - test_fraction), got {self.val_fraction}")
        for name in ("corrupt_hard_rate", "corrupt_easy_rate", "corrupt_medium_rate", "terse_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class ToyModelConfig:
    """Size and initialisation of the toy Llama."""

    hidden_size: int = 128  # width of the residual stream
    num_layers: int = 4  # decoder layers
    num_heads: int = 4  # attention heads (as many key/value heads: plain multi-head attention)
    intermediate_size: int = 384  # width of the SwiGLU MLP
    max_position: int = 256  # longest sequence (prompt + solution) the model is meant for
    rope_theta: float = 10000.0  # RoPE base
    tie_embeddings: bool = False  # share the input embedding and the output head
    seed: int = 0  # seed of the random initialisation


@dataclass
class ToyPretrainConfig:
    """Everything that determines a toy base model."""

    world: ToyWorldConfig = field(default_factory=ToyWorldConfig)  # problem shapes and corpus noise
    model: ToyModelConfig = field(default_factory=ToyModelConfig)  # model size and initialisation
    n_train_problems: int = 60_000  # corpus size: train questions drawn with replacement, own noise each
    steps: int = 1200  # optimizer steps (the corpus is reshuffled and reused when exhausted)
    batch_size: int = 32  # sequences per optimizer step
    lr: float = 1.5e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of the peak (cosine decay)
    warmup_steps: int = 50  # linear warmup steps
    weight_decay: float = 0.01  # AdamW weight decay
    grad_clip: float = 1.0  # gradient norm clip
    seed: int = 0  # seed of the corpus and the data order (the model init has its own seed)
    eval_every: int = 200  # greedy-accuracy evaluation period in steps (also at the end); 0 = end only
    n_eval: int = 200  # held-out test problems behind the greedy-accuracy curve
    eval_seed: int = 1234  # seed of the evaluation problems
    eval_batch_size: int = 100  # prompts per generate call during evaluation
    max_minutes: float = 20.0  # stop training early (and still save) after this much wall time
    num_threads: int = runtime(0)  # torch CPU threads; 0 = all cores (fewer helps when other jobs share the CPU)
