"""Hand-made scored trees for the builder and build-stage tests (no model, no sampler).

``S(text, value, *children, ...)`` describes a step; ``make_tree`` numbers the steps depth-first
(pre-order), so the ids in the tests' comments can be read off the nesting.
"""

from __future__ import annotations

from sppd.records import Node, Problem, Tree


class S:
    """A step spec. ``correct`` set (or a non-delimiter ``finish``) makes it terminal."""

    def __init__(self, text, value, *children, correct=None, finish="delimiter", terminal=None):
        self.text, self.value, self.children = text, value, children
        self.correct, self.finish, self.terminal = correct, finish, terminal


def make_tree(*roots: S, pid: str = "p0", question: str = "What is 1+2*3?", gold: str = "7") -> Tree:
    tree = Tree(problem=Problem(id=pid, question=question, gold=gold), prompt_ids=[1, 2, 3])

    def add(spec: S, parent: int, depth: int) -> None:
        terminal = (
            spec.terminal if spec.terminal is not None else (spec.correct is not None or spec.finish != "delimiter")
        )
        answer = None if spec.correct is None else (gold if spec.correct else "wrong")
        node = Node(
            id=len(tree.nodes),
            parent=parent,
            depth=depth,
            text=spec.text,
            token_ids=[len(tree.nodes)],
            token_logps=[-1.0],
            finish_reason=spec.finish,
            terminal=terminal,
            answer=answer,
            correct=spec.correct,
            value=spec.value,
        )
        tree.nodes.append(node)
        tree.children_of(parent).append(node.id)
        for child in spec.children:
            add(child, node.id, depth + 1)

    for spec in roots:
        add(spec, -1, 0)
    return tree


def tree_a(pid: str = "p0") -> Tree:
    """The main example (values are exact binary fractions so gaps have no rounding).

    n0 "A1" .875
      n1 "A1B1" .75
        n2 "A1B1C1 \\boxed{7}" .9375  correct   path (.875, .75, .9375): min .75
        n3 "A1B1C2 \\boxed{8}" .125   wrong     path (.875, .75, .125):  min .125
      n4 "A1B2" .1875
        n5 "A1B2C1 \\boxed{8}" .0625  wrong     path (.875, .1875, .0625): min .0625
    n6 "A2" .375
      n7 "A2B1 \\boxed{7}" .5         correct   path (.375, .5): min .375
    """
    return make_tree(
        S(
            "A1",
            0.875,
            S(
                "A1B1",
                0.75,
                S("A1B1C1 \\boxed{7}", 0.9375, correct=True),
                S("A1B1C2 \\boxed{8}", 0.125, correct=False),
            ),
            S("A1B2", 0.1875, S("A1B2C1 \\boxed{8}", 0.0625, correct=False)),
        ),
        S("A2", 0.375, S("A2B1 \\boxed{7}", 0.5, correct=True)),
        pid=pid,
    )


def tree_no_correct(pid: str = "p1") -> Tree:
    """Only wrong answers.

    n0 "W1" .5
      n1 "W1a \\boxed{8}" .25  wrong
    n2 "W2 \\boxed{9}" .0625   wrong
    """
    return make_tree(
        S("W1", 0.5, S("W1a \\boxed{8}", 0.25, correct=False)),
        S("W2 \\boxed{9}", 0.0625, correct=False),
        pid=pid,
    )


def tree_ties(pid: str = "p2", v1: float = 0.75, with_q: bool = True) -> Tree:
    """Three correct paths with equal minimum value .5 (only correct answers: no DPO pair).

    n0 "P" .5
      n1 "P-a \\boxed{7}" v1   correct   path (.5, v1): min .5, mean (.5 + v1) / 2
      n2 "P-b \\boxed{7}" .5   correct   path (.5, .5): min .5, mean .5
    n3 "Q \\boxed{7}" .5       correct   path (.5):     min .5, mean .5 (1 step)
    """
    roots = [S("P", 0.5, S("P-a \\boxed{7}", v1, correct=True), S("P-b \\boxed{7}", 0.5, correct=True))]
    if with_q:
        roots.append(S("Q \\boxed{7}", 0.5, correct=True))
    return make_tree(*roots, pid=pid)
