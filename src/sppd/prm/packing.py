"""Score every node of sampling trees with a PRM: tree packing, per path, or per node.

A causal PRM scores all steps of a path in one forward, and the paths of a tree share their
prefixes. Three ways to score a tree (``PackingMode``):

* ``TREE``: the question's tokens once, then each node's step tokens once, in one sequence (or a
  few, see ``row_budget``) with a tree-shaped attention mask: a token sees its own earlier
  tokens, its ancestors' tokens and the question. Position ids are the token's position in its
  own path, so every token sees exactly the keys, values and rotary positions it sees when its
  path is scored alone: each distinct token is processed (almost) once.
* ``PATH``: every root-to-leaf path once (right-padded batches of similar length); a shared
  prefix node takes its score from the first path that covers it.
* ``NODE``: every node's whole prefix separately (the naive baseline).

Tree packing is only valid when the PRM's layout of a path is the concatenation of per-step
pieces. ``layout_tree`` derives each node's piece as the difference between the PRM's encoding
of the node's path and of its parent's path, and refuses (``PackingUnsupported``) unless the
parent's encoding is a prefix of the child's and the score positions line up. Then, by
induction, a path's pieces concatenate to exactly ``prm.encode(path)``. Of the shipped adapters
``toy`` and ``skywork`` (plain text, newline after each step) qualify; ``qwen25-math-prm``
does not (the chat template closes the assistant turn after the last ``<extra_0>``, so a longer
path does not extend a shorter one); ``math-shepherd`` and ``rlhflow`` qualify when their
tokenizer does not merge tokens across the step boundary, which is checked per tree. A tree
that does not qualify is scored per path, and the reason is reported.

The 4D mask is additive (0 / ``finfo.min``) in the model's dtype: transformers 5.24 passes a 4D
mask to the attention function unchanged, ``eager`` adds it to the scores and ``sdpa`` takes
it as is (see ``sppd.packing``). Other attention backends are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from sppd.packing import SUPPORTED_ATTENTION, additive_attention_mask
from sppd.prm.base import PRMInput, PRMScoreError, TokenLevelPRM
from sppd.prm.hf_common import pad_right, plan_batches
from sppd.records import Tree
from sppd.types import PackingMode


class PackingUnsupported(ValueError):
    """This PRM's token layout (or attention backend) cannot be packed as a tree."""


@dataclass(frozen=True)
class TreeLayout:
    """A tree in a PRM's own token format: the question's piece and one piece per node.

    ``offsets[n]`` is the position of node n's first token within its path's encoding and
    ``score_index[n]`` the index inside ``pieces[n]`` of the token that carries n's score.
    """

    root_ids: list[int]
    pieces: list[list[int]]
    offsets: list[int]
    score_index: list[int]

    @property
    def distinct_tokens(self) -> int:
        return len(self.root_ids) + sum(len(p) for p in self.pieces)

    def path_ids(self, tree: Tree, node_id: int) -> list[int]:
        """The concatenated pieces from the question down to ``node_id``."""
        ids = list(self.root_ids)
        for k in tree.path_to(node_id):
            ids.extend(self.pieces[k])
        return ids


@dataclass
class ScoringStats:
    """What scoring cost: PRM forward tokens (real and padded), forwards, fallbacks."""

    forward_tokens: int = 0
    padded_tokens: int = 0
    forwards: int = 0
    nodes: int = 0
    fallback_trees: int = 0
    fallback_reasons: list[str] = field(default_factory=list)


def _inner_modules(prm: object) -> list[torch.nn.Module]:
    model = getattr(prm, "model", None)
    found = []
    while isinstance(model, torch.nn.Module) and model not in found:
        found.append(model)
        model = getattr(model, "model", None)
    return found


def forward_dtype_device(prm: object) -> tuple[torch.dtype, torch.device]:
    """The PRM model's parameter dtype and device (float32 / CPU when it has no ``model``)."""
    for module in _inner_modules(prm):
        param = next(module.parameters(), None)
        if param is not None:
            return param.dtype, param.device
    return torch.float32, torch.device("cpu")


def packing_support(prm: object) -> str:
    """``""`` when tree packing may be tried for ``prm``, else the reason it cannot."""
    if not isinstance(prm, TokenLevelPRM):
        return f"{getattr(prm, 'name', type(prm).__name__)} exposes no token-level hooks"
    for module in _inner_modules(prm):
        impl = getattr(getattr(module, "config", None), "_attn_implementation", None)
        if impl is not None and impl not in SUPPORTED_ATTENTION:
            return f"{prm.name}: attention {impl!r} ignores dense 4D masks (need {SUPPORTED_ATTENTION})"
    return ""


def _encode(prm: TokenLevelPRM, tree: Tree, steps: list[str]):
    return prm.encode(PRMInput(tree.problem.question, steps))


def layout_tree(prm: TokenLevelPRM, tree: Tree) -> TreeLayout:
    """Per-node pieces whose concatenation along any path is ``prm.encode(path)`` exactly.

    Raises ``PackingUnsupported`` naming the problem and node where the PRM's encoding of a
    path does not extend its parent's (see the module docstring).
    """
    where = f"{prm.name}, problem {tree.problem.id}"
    try:
        root = _encode(prm, tree, [])
        root_ids = list(root.input_ids) if not root.score_positions else None
    except Exception:  # e.g. a chat template that needs at least one turn
        root_ids = []
    if root_ids is None:
        raise PackingUnsupported(f"{where}: the question alone already has score positions")
    full: dict[int, list[int]] = {-1: root_ids}
    pieces, offsets, score_index = [], [], []
    for node in tree.nodes:
        if node.parent >= node.id:
            raise PackingUnsupported(f"{where}: node {node.id} listed before its parent")
        parent_ids = full[node.parent]
        enc = _encode(prm, tree, tree.path_steps(node.id))
        ids, positions = list(enc.input_ids), list(enc.score_positions)
        start = len(parent_ids)
        parent_positions = [offsets[k] + score_index[k] for k in tree.path_to(node.id)[:-1]]
        if (
            ids[:start] != parent_ids
            or positions[:-1] != parent_positions
            or not positions
            or len(positions) != node.depth + 1
            or positions[-1] < start
        ):
            raise PackingUnsupported(
                f"{where}: node {node.id}: the encoding of its path does not extend its parent's "
                "(the PRM's layout is not a concatenation of per-step pieces)"
            )
        full[node.id] = ids
        pieces.append(ids[start:])
        offsets.append(start)
        score_index.append(positions[-1] - start)
    return TreeLayout(root_ids=root_ids, pieces=pieces, offsets=offsets, score_index=score_index)


# Row length: a packed row's dense attention costs O(T^2) while its saving saturates once a
# row holds a few paths, and each new row re-reads its first node's ancestors as context. So a
# row holds about PATHS_PER_ROW of the tree's longest paths, and at least MIN_ROW_TOKENS: with
# the ~1M toy PRM on CPU, attention over 1024-token rows costs more than the MLPs, while 512
# keeps the forward/distinct token ratio near 1.1 (benchmarks/bench_prm_packing.py). For a 7B
# PRM the MLPs dominate and rows of a few thousand tokens are cheap.
MIN_ROW_TOKENS = 512
PATHS_PER_ROW = 4


def row_budget(tree: Tree, layout: TreeLayout, max_batch_tokens: int) -> int:
    """Default ``max_row_tokens`` for a tree (see the comment above), within one forward's budget."""
    longest = max((layout.offsets[n.id] + len(layout.pieces[n.id]) for n in tree.nodes), default=0)
    return min(max_batch_tokens, max(MIN_ROW_TOKENS, PATHS_PER_ROW * longest))


@dataclass
class PackedRow:
    """One packed sequence, possibly holding parts of several trees.

    ``segments`` are ``(tree index, node id, start, end)`` spans (node -1 = the question) and
    ``scored`` are ``(tree index, node id, index in row)`` of the scores read from this row.
    """

    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    segments: list[tuple[int, int, int, int]] = field(default_factory=list)
    scored: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, t: int, node_id: int, piece: list[int], offset: int) -> None:
        self.segments.append((t, node_id, len(self.input_ids), len(self.input_ids) + len(piece)))
        self.position_ids.extend(range(offset, offset + len(piece)))
        self.input_ids.extend(piece)


def _preorder(tree: Tree) -> list[int]:
    order, stack = [], list(reversed(tree.root_children))
    while stack:
        node_id = stack.pop()
        order.append(node_id)
        stack.extend(reversed(tree.nodes[node_id].children))
    return order


def pack_rows(trees: Sequence[Tree], layouts: Sequence[TreeLayout], max_row_tokens: int) -> list[PackedRow]:
    """Trees one after another, nodes in depth-first order, cut into rows of at most
    ``max_row_tokens`` (a single path longer than that gets a longer row).

    A tree enters a row with its question; a row that starts inside a tree repeats the question
    and the ancestors of its first node as unscored context. In preorder, a later node's
    parent is either earlier in the same row or one of those ancestors, so every node finds
    its whole path in its row. Filling rows across trees keeps them full (little padding).
    """
    rows: list[PackedRow] = []
    row = PackedRow()
    for t, (tree, layout) in enumerate(zip(trees, layouts)):
        in_row = False  # does `row` hold this tree's question (and the path to the next node)?
        for node_id in _preorder(tree):
            piece = layout.pieces[node_id]
            context = [] if in_row else [-1] + tree.path_to(node_id)[:-1]
            need = len(piece) + sum(len(layout.root_ids) if k < 0 else len(layout.pieces[k]) for k in context)
            if row.input_ids and len(row.input_ids) + need > max_row_tokens:
                rows.append(row)
                row, in_row = PackedRow(), False
                context = [-1] + tree.path_to(node_id)[:-1]
            for k in context:
                row.add(t, k, layout.root_ids if k < 0 else layout.pieces[k], 0 if k < 0 else layout.offsets[k])
            in_row = True
            row.scored.append((t, node_id, len(row.input_ids) + layout.score_index[node_id]))
            row.add(t, node_id, piece, layout.offsets[node_id])
    if row.input_ids:
        rows.append(row)
    return rows


def row_allowed_mask(trees: Sequence[Tree], row: PackedRow, width: int) -> torch.Tensor:
    """(width, width) bool: query q may attend key k iff k <= q and k's node is q's node, one
    of its ancestors or its tree's question. Padding queries (past the row) see themselves."""
    keys = [(t, node_id) for t, node_id, _, _ in row.segments]
    lineage = [{(t, k) for k in trees[t].path_to(node_id)} | {(t, -1)} for t, node_id in keys]
    ancestor = torch.tensor([[b in lineage[a] for b in keys] for a in range(len(keys))])  # (S, S)
    segment_of = torch.cat([torch.full((end - start,), s) for s, (_, _, start, end) in enumerate(row.segments)])
    length = len(row.input_ids)
    allowed = torch.eye(width, dtype=torch.bool)
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed[:length, :length] = ancestor[segment_of[:, None], segment_of[None, :]] & causal
    return allowed


def _forward(prm: TokenLevelPRM, input_ids, mask, position_ids, stats: ScoringStats, real: int):
    stats.forwards += 1
    stats.forward_tokens += real
    stats.padded_tokens += input_ids.numel()
    with torch.inference_mode():
        return prm.token_scores(input_ids, mask, position_ids).float().cpu()  # (B, T)


def _score_packed(prm, trees, layouts, scores, stats, max_batch_tokens, max_row_tokens) -> None:
    """Score the trees in ``layouts`` (tree index -> layout) from packed rows."""
    if not layouts:
        return
    dtype, device = forward_dtype_device(prm)
    index = sorted(layouts)
    budget = max_row_tokens or max(row_budget(trees[t], layouts[t], max_batch_tokens) for t in index)
    rows = pack_rows([trees[t] for t in index], [layouts[t] for t in index], budget)
    packed_trees = [trees[t] for t in index]
    for batch in plan_batches([len(r.input_ids) for r in rows], len(rows), max_batch_tokens):
        width = max(len(rows[b].input_ids) for b in batch)
        input_ids = torch.full((len(batch), width), prm.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros((len(batch), width), dtype=torch.long)
        allowed = torch.zeros((len(batch), 1, width, width), dtype=torch.bool)
        for i, b in enumerate(batch):
            input_ids[i, : len(rows[b].input_ids)] = torch.tensor(rows[b].input_ids)
            position_ids[i, : len(rows[b].input_ids)] = torch.tensor(rows[b].position_ids)
            allowed[i, 0] = row_allowed_mask(packed_trees, rows[b], width)
        mask = additive_attention_mask(allowed.to(device), dtype)
        real = sum(len(rows[b].input_ids) for b in batch)
        token_scores = _forward(prm, input_ids.to(device), mask, position_ids.to(device), stats, real)
        for i, b in enumerate(batch):
            for t, node_id, position in rows[b].scored:
                scores[index[t]][node_id] = float(token_scores[i, position])


def _end_nodes(tree: Tree, mode: PackingMode) -> list[int]:
    """Nodes whose whole path is scored: childless nodes (PATH) or every node (NODE)."""
    if mode == PackingMode.NODE:
        return [n.id for n in tree.nodes]
    return [n.id for n in tree.nodes if not n.children]


def _path_scores_token_level(prm, items, where, stats, max_batch_tokens) -> list[list[float]]:
    encoded = [prm.encode(item) for item in items]
    for enc, item, name in zip(encoded, items, where):
        if len(enc.score_positions) != len(item.steps):
            raise PRMScoreError(
                f"{name}: the PRM input has {len(enc.score_positions)} score positions for {len(item.steps)} steps"
            )
    _, device = forward_dtype_device(prm)
    out: list[list[float]] = [[] for _ in items]
    lengths = [len(enc.input_ids) for enc in encoded]
    for batch in plan_batches(lengths, len(items), max_batch_tokens):
        input_ids, mask, position_ids = pad_right([encoded[i].input_ids for i in batch], prm.pad_token_id, device)
        token_scores = _forward(prm, input_ids, mask, position_ids, stats, sum(lengths[i] for i in batch))
        for row, i in enumerate(batch):
            out[i] = token_scores[row, encoded[i].score_positions].tolist()
    return out


def _score_paths(prm, trees, indices, scores, stats, mode, max_batch_tokens) -> None:
    """PATH/NODE modes: one PRM input per end node; a node keeps its first score."""
    ends = [(t, n) for t in indices for n in _end_nodes(trees[t], mode)]
    items = [PRMInput(trees[t].problem.question, trees[t].path_steps(n)) for t, n in ends]
    where = [f"problem {trees[t].problem.id}, node {n}" for t, n in ends]
    if isinstance(prm, TokenLevelPRM):
        results = _path_scores_token_level(prm, items, where, stats, max_batch_tokens)
    else:
        results = prm.score(items)
        stats.forwards += 1
    if len(results) != len(items):
        raise PRMScoreError(f"{prm.name}: got scores for {len(results)} paths, expected {len(items)}")
    for (t, end), item, name, values in zip(ends, items, where, results):
        if len(values) != len(item.steps):
            raise PRMScoreError(f"{name}: the PRM returned {len(values)} scores for a path of {len(item.steps)} steps")
        for node_id, value in zip(trees[t].path_to(end), values):
            if scores[t][node_id] is None:
                scores[t][node_id] = value


def check_tree_scores(tree: Tree, scores: Sequence[float | None]) -> None:
    """Raise ``PRMScoreError`` naming the problem and node of a missing, NaN or out-of-range score."""
    if len(scores) != len(tree.nodes):
        raise PRMScoreError(f"problem {tree.problem.id}: {len(scores)} scores for {len(tree.nodes)} nodes")
    for node_id, value in enumerate(scores):
        where = f"problem {tree.problem.id}, node {node_id}"
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            raise PRMScoreError(f"{where}: score {value!r} is not a number")
        if math.isnan(value):
            raise PRMScoreError(f"{where}: score is NaN")
        if not 0.0 <= value <= 1.0:
            raise PRMScoreError(f"{where}: score {value} is outside [0, 1]")


def score_trees(
    prm,
    trees: Sequence[Tree],
    mode: PackingMode = PackingMode.TREE,
    max_batch_tokens: int = 16384,
    max_row_tokens: int | None = None,
) -> tuple[list[list[float]], ScoringStats]:
    """One score per node of every tree (``scores[t][node_id]``), checked, and the cost.

    ``max_batch_tokens`` bounds the padded tokens of one forward; ``max_row_tokens`` the length
    of a packed row (default: the largest ``row_budget`` of the packed trees).

    ``mode=TREE`` falls back to per-path scoring for trees (or PRMs) that cannot be packed and
    records why in ``stats.fallback_reasons``.
    """
    stats = ScoringStats(nodes=sum(len(t.nodes) for t in trees))
    scores: list[list[float | None]] = [[None] * len(t.nodes) for t in trees]
    layouts: dict[int, TreeLayout] = {}
    by_path = list(range(len(trees)))
    if mode == PackingMode.TREE:
        reason = packing_support(prm)
        for t, tree in enumerate(trees):
            try:
                if reason:
                    raise PackingUnsupported(reason)
                layouts[t] = layout_tree(prm, tree)
            except PackingUnsupported as exc:
                stats.fallback_trees += 1
                if str(exc) not in stats.fallback_reasons and len(stats.fallback_reasons) < 5:
                    stats.fallback_reasons.append(str(exc))
        by_path = [t for t in by_path if t not in layouts]
        _score_packed(prm, trees, layouts, scores, stats, max_batch_tokens, max_row_tokens)
    if by_path:
        _score_paths(
            prm,
            trees,
            by_path,
            scores,
            stats,
            PackingMode.NODE if mode == PackingMode.NODE else PackingMode.PATH,
            max_batch_tokens,
        )
    for tree, tree_scores in zip(trees, scores):
        check_tree_scores(tree, tree_scores)
    return scores, stats
