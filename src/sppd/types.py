"""The closed choices of the config: one enum per concept, nothing but the standard library.

Every setting whose value comes from a fixed list is one of these enums, so ``sppd.config``
checks it when the config loads (a typo fails before any sampling, naming the key) and the code
compares members, never strings. Member values are exactly the strings the YAML configs use.
Kept dependency-free so any layer (settings, losses, PRM adapters, stages) can import it.

Open sets (PRM scorers, sampling engines, benchmarks) are registries, not enums; ``NO_PRM`` is
the one reserved value of the PRM-name settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum

NO_PRM = "none"  # eval.prm: skip the ORM methods. Any other non-empty value names a registered PRM.


# (question, steps of a path so far) -> per step: is it a right step from the state before it? A task's
# step checker (``Task.step_checker``); the toy PRM's process labels (``prm.label: process``) use it.
StepChecker = Callable[[str, Sequence[str]], list[bool]]


class DType(StrEnum):
    """Weights/compute dtype (``sppd.runtime.resolve_dtype`` maps it to a torch dtype).

    The torch spellings (``float32``, ``bfloat16``, ``float16``) are accepted as aliases, because
    HF ``config.json`` files and older PRM options write them.
    """

    AUTO = "auto"  # bf16 on CUDA, fp32 on CPU
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @classmethod
    def _missing_(cls, value: object) -> DType | None:
        return _DTYPE_ALIASES.get(value) if isinstance(value, str) else None

    @property
    def torch_name(self) -> str:
        """The spelling torch, HF ``config.json`` and vLLM use (``auto`` stays ``auto``)."""
        return next((alias for alias, d in _DTYPE_ALIASES.items() if d is self), self.value)


_DTYPE_ALIASES = {"float32": DType.FP32, "bfloat16": DType.BF16, "float16": DType.FP16}


class MixedPrecision(StrEnum):
    """Accelerate's autocast mode during training (``train.mixed_precision``)."""

    AUTO = "auto"  # bf16 on CUDA, no on CPU
    NO = "no"  # fp32 throughout
    BF16 = "bf16"
    FP16 = "fp16"

    @classmethod
    def _missing_(cls, value: object) -> MixedPrecision | None:
        # YAML 1.1 reads an unquoted `no` as false; that can only mean NO here.
        return cls.NO if value is False else None


class ChatTemplateMode(StrEnum):
    """Whether prompts go through the tokenizer's chat template."""

    AUTO = "auto"  # use it when the tokenizer has one
    ALWAYS = "always"
    NEVER = "never"


class StepDelimiter(StrEnum):
    """How a solution is cut into steps while generating."""

    NEWLINE = "newline"  # one step per line (the toy world, "Step k:" lines)
    BLANK_LINE = "blank_line"  # steps separated by an empty line (typical for real models)
    CUSTOM = "custom"  # the string in ``step.custom``


class PackingMode(StrEnum):
    """How a causal PRM scores a tree."""

    TREE = "tree"  # whole tree in one sequence, tree-shaped attention mask: each token once
    PATH = "path"  # each root-to-leaf path once; shared prefixes reuse the path's scores
    NODE = "node"  # every node's full prefix separately (the naive baseline)


class RolloutNodes(StrEnum):
    """Which nodes get ``score.mc_rollouts`` extra rollouts (``mc_min_paths`` top-ups apply to all)."""

    BRANCHING = "branching"  # children of a node with 2+ children: the steps step pairs compare
    # children of a node whose children's tree values differ: the only siblings whose pair can pass
    # a value-gap threshold on tree values alone, at a fraction of branching's cost where most
    # siblings agree (toy v2: both correct, written two ways)
    CONTESTED = "contested"
    ALL = "all"  # every non-terminal node


class MCJudge(StrEnum):
    """What counts as a correct completion in Monte-Carlo values."""

    OUTCOME = "outcome"  # the final answer is right (Math-Shepherd; works for any problem)
    PROCESS = "process"  # the answer and every step are right (toy world only: needs the exact step checker)


class SiblingRule(StrEnum):
    """What an expansion does with identical children (same tokens) (``sample.siblings``)."""

    MERGE = "merge"  # keep one copy: fewer than C children (the default; no extra generation)
    RESAMPLE = "resample"  # re-draw the duplicates up to sample.sibling_tries rounds, then merge what is left


class PRMLabel(StrEnum):
    """How a node's Monte-Carlo completions become the toy PRM's training target (``prm.label``)."""

    SOFT = "soft"  # the fraction of correct completions
    HARD = "hard"  # 1 if any completion is correct (Math-Shepherd's hard estimation)
    PROCESS = "process"  # no MC: 1 while the step and every earlier one pass the task's step judge
    # no MC: the step's own verdict (right from the state before it); the toy PRM then scores a
    # prefix as the running min of its steps' scores, which is the process label when exact
    LOCAL = "local"

    @property
    def needs_step_checker(self) -> bool:
        """Labels from the task's step checker rather than from MC values."""
        return self in (PRMLabel.PROCESS, PRMLabel.LOCAL)


class PRMBackbone(StrEnum):
    """What ``sppd prm train`` trains (``prm.backbone``)."""

    TOY = "toy"  # the toy PRM (sppd.prm.toy) on the toy world's text format
    HF = "hf"  # a Skywork-format PRM (sppd.prm.value_head) from the HF causal-LM folder ``prm.init``


class StepPairMode(StrEnum):
    """Which sibling pairs become step-level preference data."""

    THRESHOLD = "threshold"  # pairs whose value gap exceeds build.step_gap (paper §6.1: 0.5)
    EVERY_STEP = "every_step"  # a pair at every branching node (the §5 every-step variant)


class Objective(StrEnum):
    """What ``sppd train`` optimises."""

    SFT = "sft"  # next-token NLL on tau_+ (SFT-PRM, §4.3)
    DPO = "dpo"  # sentence-level sigmoid DPO on (tau_+, tau_-) (DPO-PRM, §4.3)
    STEP_DPO = "step_dpo"  # step pairs with a value margin (SPPD, Eq. 5)


class OptimizerName(StrEnum):
    ADAMW = "adamw"
    SGD = "sgd"


class MarginMode(StrEnum):
    """How the step-DPO margin m in -log σ(β·h − m) is set (paper Eq. 5 and §6.3, Table 4; ``train.margin``)."""

    DYNAMIC = "dynamic"  # m = γ·(V(s_w) − V(s_l)): SPPD's dynamic value margin (Eq. 5)
    FIXED = "fixed"  # m = a constant γ* (train.fixed_margin): the "fix-margin" ablation of Table 4
    NONE = "none"  # m = 0: plain Step-DPO (Lai et al., 2024), Eq. 5 with γ = 0


class OverlongRule(StrEnum):
    DROP = "drop"  # skip examples longer than train.max_length (logged and counted)
    TRUNCATE = "truncate"  # cut the completion's end (the prompt is never cut)


class SampleScore(StrEnum):
    """Which PRM score stands for a whole sample in the ORM methods (``eval.sample_score``)."""

    LAST = "last"  # the final step's score (the paper's choice; default)
    MIN = "min"  # the weakest step
    MEAN = "mean"  # the average over steps


class Stage2Init(StrEnum):
    """The model Stage 2 resamples trees with (paper §6.2: "the best model trained in the first stage")."""

    BEST_VAL = "best_val"  # the Stage-1 model with the best greedy accuracy on pipeline.val_benchmark
    SPPD = "sppd"  # the Stage-1 SPPD model (also the fallback when no val_benchmark is set)


class StepPairsFrom(StrEnum):
    """Whose trees Stage 1's step-DPO runs (+SPPD, margin ablations, gamma sweep) learn from."""

    BASE = "base"  # the Stage-1 trees the base model sampled (the paper's recipe)
    START = "start"  # new trees their start model (+DPO-PRM, or Base) samples on the same problems: on-policy


class Launcher(StrEnum):
    """How the pipeline runs a stage (``pipeline.launcher``, per stage ``pipeline.stage_launcher``)."""

    INPROCESS = "inprocess"  # call the stage in the pipeline's own process (the toy default: no start-up cost)
    PYTHON = "python"  # one plain process: `python -m sppd <stage> -c <resolved.yaml>` (vLLM places its own GPUs)
    ACCELERATE = "accelerate"  # `accelerate launch --config_file <pipeline.accelerate_config> -m sppd <stage> ...`


class ToyErrorModel(StrEnum):
    """Which slips the toy pretraining corpus makes (``toy.world.error_model``)."""

    V1 = "v1"  # one slip per step, nearly always larger (c+1, c+10, sign dropped): "smaller is right" predicts pairs
    V2 = "v2"  # slips of several kinds, both directions (±1, ±10, sign, digit swap, operator), one per step by hash
