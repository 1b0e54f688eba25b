"""The toy world's settings that the config schema needs: model size and pretraining.

Plain dataclasses importing nothing heavy (no torch, no transformers), so that loading a config
(``sppd.settings``, ``sppd show-config``) stays quick; the code that uses them lives in
``sppd.toy.model`` and ``sppd.toy.pretrain``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sppd.toy.world import ToyWorldConfig


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
    num_threads: int = 0  # torch CPU threads; 0 = all cores (fewer helps when other jobs share the CPU)
