"""The typed settings of every stage, composed into one ``RunConfig``.

One root config for all stages (rather than one file per stage) because a pipeline run shares
the model, prompt, step rule and problems between stages; each stage reads its own section.
Loading and strictness live in ``sppd.config``; this module only declares what exists.
Each field's comment is its one-line documentation (``sppd show-config`` prints the values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sppd import config as _config


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


class DType(StrEnum):
    AUTO = "auto"  # bf16 on CUDA, fp32 on CPU
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


@dataclass
class ModelConfig:
    path: str | None = None  # HF model folder; None = the cached toy base model
    dtype: DType = DType.AUTO  # weights/compute dtype
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    trust_remote_code: bool = False  # only for model folders you trust


@dataclass
class PromptConfig:
    template: str = "{question}\n"  # plain-text prompt when no chat template is used
    system: str = "Please reason step by step and put your answer in \\boxed{}."  # paper App. C
    chat_template: ChatTemplateMode = ChatTemplateMode.AUTO  # use the tokenizer's chat template


@dataclass
class StepConfig:
    delimiter: StepDelimiter = StepDelimiter.NEWLINE  # step boundary rule
    custom: str = ""  # delimiter string when delimiter=custom
    answer_pattern: str = "\\\\boxed|The answer is"  # regex: a step matching it ends the path

    def delimiter_text(self) -> str:
        """The literal string that ends a step."""
        if self.delimiter == StepDelimiter.NEWLINE:
            return "\n"
        if self.delimiter == StepDelimiter.BLANK_LINE:
            return "\n\n"
        if not self.custom:
            raise _config.ConfigError("config key 'step.custom': required when step.delimiter=custom")
        return self.custom


@dataclass
class ProblemsConfig:
    source: str = "toy"  # toy | benchmark name (gsm8k, math500, ...) | mix | path to a JSONL file
    split: str = "train"  # toy split: train | test
    n: int | None = None  # use the first n problems (None = all)
    question_field: str = "question"  # JSONL field names for user files
    answer_field: str = "answer"
    id_field: str = "id"  # a missing id field numbers problems by line


@dataclass
class SampleConfig:
    K: int = 64  # walks per problem (paper: 64)
    C: int = 2  # children per expansion (paper: 2)
    max_depth: int = 12  # a walk stops after this many steps
    max_step_tokens: int = 64  # a step is cut (finish_reason=length) after this many tokens
    max_total_tokens: int = 512  # prompt-free solution length limit along a path
    temperature: float = 1.0  # sampling temperature of expansions
    top_p: float = 1.0  # nucleus sampling of expansions
    selection_temperature: float = 1.0  # softmax temperature over children's average log-probs
    engine: str = "hf"  # engine backend name (registry in sppd.sampling.engine)
    engine_batch_size: int = 256  # most sequences in one engine call
    problems_per_shard: int = 16  # problems advanced in lockstep and written as one shard
    out: str = ""  # output folder (default: <run_dir>/trees)


@dataclass
class RunConfig:
    """Everything a run needs; ``sppd show-config`` prints it resolved."""

    run_dir: str = "runs/default"  # folder holding every stage's artifact folder
    seed: int = 0  # global seed; shards derive theirs from it
    threads: int = 0  # torch CPU threads (0 = all cores)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    step: StepConfig = field(default_factory=StepConfig)
    problems: ProblemsConfig = field(default_factory=ProblemsConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def load_run_config(name_or_path: str, overrides: list[str] | None = None) -> RunConfig:
    """The resolved, validated config of a run."""
    return _config.load(RunConfig, name_or_path, overrides)
