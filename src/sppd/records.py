"""Typed records that cross stage boundaries.

Stages pass nothing but files to each other (DESIGN.md); these dataclasses are what those files
hold. Each record type has a ``kind`` tag and every shard line carries ``schema`` so that a reader
can refuse data written by an incompatible version instead of mis-reading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sppd.errors import SppdError

SCHEMA_VERSION = 1
# Kinds whose format moved past SCHEMA_VERSION: the version written now. Training records carry the
# sampled token ids since version 2; version 1 records (text only) are still read, and training
# re-tokenizes their text.
KIND_SCHEMA = {"sft": 2, "pair": 2, "step_pair": 2}
# finish reasons of a step at which the path was cut by a budget rather than ended by the model
CUT_REASONS = frozenset({"length", "max_depth", "max_total"})


class RecordError(SppdError, ValueError):
    """A record on disk does not have the fields or types its kind needs."""


def schema_of(kind: str | None) -> int:
    """The schema version records of ``kind`` are written with."""
    return KIND_SCHEMA.get(kind or "", SCHEMA_VERSION)


def reads_schema(kind: str | None, schema: object) -> bool:
    """Whether this sppd reads a ``kind`` record of version ``schema`` (every version up to the current)."""
    return isinstance(schema, int) and not isinstance(schema, bool) and 1 <= schema <= schema_of(kind)


def _from_dict(cls, data: dict[str, Any], where: str):
    """Build dataclass ``cls`` from ``data``; missing or unknown fields raise ``RecordError``."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names - {"schema", "kind"}
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
    kwargs = {k: v for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise RecordError(f"{where}: {cls.__name__}: {exc}") from None


@dataclass
class Problem:
    """A question with its gold final answer (``gold`` is the answer string, not a solution)."""

    id: str
    question: str
    gold: str
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "kind": "problem", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "problem") -> Problem:
        rec = _from_dict(cls, data, where)
        for name in ("id", "question", "gold"):
            if not isinstance(getattr(rec, name), str):
                raise RecordError(f"{where}: field '{name}' must be a string")
        return rec


@dataclass
class Node:
    """One reasoning step in a sampling tree; the state after it is prefix + this step.

    ``parent`` is the index of the parent node in ``Tree.nodes`` (-1 for children of the root,
    whose state is the bare question). ``value`` is filled by the scoring stage: the PRM's
    estimate of V*(s_t) for the state ending with this step.
    """

    id: int
    parent: int
    depth: int
    text: str
    token_ids: list[int]
    token_logps: list[float]
    finish_reason: str
    terminal: bool
    avg_logp: float = 0.0
    cum_logp: float = 0.0
    answer: str | None = None
    correct: bool | None = None
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float | None = None
    value_source: str | None = None
    mc_value: float | None = None
    mc_count: int = 0

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def ends_trajectory(self) -> bool:
        """Whether the model itself ended the solution with this step (answer step or EOS)."""
        return self.terminal and self.finish_reason not in CUT_REASONS


@dataclass
class Tree:
    """The sampling tree of one problem: its nodes in creation order and sampling statistics."""

    problem: Problem
    prompt_ids: list[int]
    nodes: list[Node] = field(default_factory=list)
    root_children: list[int] = field(default_factory=list)
    root_visits: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def children_of(self, node_id: int) -> list[int]:
        """Children of ``node_id``; -1 means the root."""
        return self.root_children if node_id < 0 else self.nodes[node_id].children

    def path_to(self, node_id: int) -> list[int]:
        """Node ids from the first step down to ``node_id`` (inclusive)."""
        path = []
        while node_id >= 0:
            path.append(node_id)
            node_id = self.nodes[node_id].parent
        return path[::-1]

    def leaves(self) -> list[int]:
        """Terminal nodes: the ends of complete root-to-leaf paths."""
        return [n.id for n in self.nodes if n.terminal]

    def path_steps(self, node_id: int) -> list[str]:
        """Step texts from the first step to ``node_id``."""
        return [self.nodes[k].text for k in self.path_to(node_id)]

    def path_text(self, node_id: int, delimiter: str = "\n") -> str:
        """The solution text from the first step to ``node_id``, steps joined by ``delimiter``."""
        return delimiter.join(self.path_steps(node_id))

    def path_token_ids(self, node_id: int) -> list[int]:
        """The generated token ids from the root to ``node_id`` (excluding the prompt; -1: none)."""
        return [t for k in self.path_to(node_id) for t in self.nodes[k].token_ids]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "kind": "tree",
            "problem": asdict(self.problem),
            "prompt_ids": self.prompt_ids,
            "root_children": self.root_children,
            "root_visits": self.root_visits,
            "stats": self.stats,
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "tree") -> Tree:
        if data.get("kind") != "tree":
            raise RecordError(f"{where}: field 'kind' must be 'tree', got {data.get('kind')!r}")
        try:
            problem = Problem.from_dict(data["problem"], f"{where}: field 'problem'")
            nodes = [_from_dict(Node, n, f"{where}: node {i}") for i, n in enumerate(data["nodes"])]
            return cls(
                problem=problem,
                prompt_ids=list(data["prompt_ids"]),
                nodes=nodes,
                root_children=list(data["root_children"]),
                root_visits=int(data.get("root_visits", 0)),
                stats=dict(data.get("stats", {})),
            )
        except KeyError as exc:
            raise RecordError(f"{where}: missing field {exc.args[0]!r}") from None


@dataclass
class SFTExample:
    """A full trajectory to imitate (SFT-PRM: tau_+ of §4.3). ``completion`` is the steps joined
    by the step delimiter; training appends the end token because the trajectory is complete.

    ``prompt_ids``/``completion_ids`` (None in hand-made and version-1 records): the prompt ids the
    sampler built and the sampled ids of the steps, delimiters included as sampled, without the
    stop token that ended the trajectory. Training uses them instead of re-tokenizing the text.
    """

    id: str
    problem_id: str
    prompt: str
    completion: str
    steps: list[str]
    min_value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None
    completion_ids: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": schema_of("sft"), "kind": "sft", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "sft") -> SFTExample:
        return _from_dict(cls, data, where)


@dataclass
class PreferencePair:
    """Sentence-level pair (DPO-PRM: chosen tau_+, rejected tau_-); both are complete trajectories.

    Column names follow TRL's preference format (prompt/chosen/rejected). ``prompt_ids``,
    ``chosen_ids``, ``rejected_ids``: the sampled ids, as in :class:`SFTExample` (None: none).
    """

    id: str
    problem_id: str
    prompt: str
    chosen: str
    rejected: str
    chosen_steps: list[str]
    rejected_steps: list[str]
    chosen_value: float | None = None
    rejected_value: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": schema_of("pair"), "kind": "pair", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "pair") -> PreferencePair:
        return _from_dict(cls, data, where)


@dataclass
class StepPair:
    """Two sibling steps after the same prefix (§4.1), with the values of the states they lead to.

    Column names follow Step-DPO (prompt, initial_reason_steps, chosen, rejected); ``chosen`` and
    ``rejected`` are single steps. ``initial_reason_steps`` is the prefix text (each prefix step
    followed by the delimiter). A step that ends its trajectory (``*_terminal``) is trained with
    the end token after it; an intermediate step is not.

    Sampled ids (None in hand-made and version-1 records): ``prompt_ids`` as the sampler built
    them, ``prefix_ids`` of the prefix steps, ``chosen_ids``/``rejected_ids`` of each step (an
    intermediate step's ids end with its delimiter as sampled; a step that ended the trajectory
    with a stop token has it removed, as in :class:`SFTExample`).
    """

    id: str
    problem_id: str
    prompt: str
    initial_reason_steps: str
    prefix_steps: list[str]
    chosen: str
    rejected: str
    chosen_value: float
    rejected_value: float
    chosen_terminal: bool = False
    rejected_terminal: bool = False
    depth: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    prompt_ids: list[int] | None = None
    prefix_ids: list[int] | None = None
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": schema_of("step_pair"), "kind": "step_pair", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "step_pair") -> StepPair:
        return _from_dict(cls, data, where)


RECORD_KINDS = {"problem": Problem, "sft": SFTExample, "pair": PreferencePair, "step_pair": StepPair}
