"""Answer extraction: the final answer of a model's solution and the gold answer of each benchmark.

Everything here is plain string work (no sympy, no math-verify), so importing this module is
cheap and nothing in it can hang on untrusted text: every scan is linear in the input length.

Model output: :func:`extract_answer` takes the last complete ``\\boxed{...}`` (nested braces,
``\\boxed 5`` without braces and ``\\fbox{...}`` included), then falls back to the last explicit
"The answer is ..." statement, then to a GSM8K-style ``#### 42`` line. It returns ``""`` when
the text states no answer; callers treat ``""`` as "no answer" (never correct, never wins a
vote).

Golds: one small function per benchmark format (GSM8K ``####``, MATH/OCW last box, OlympiadBench
``final_answer`` list, Gaokao ``$...$`` answers).

Comparable forms of the strings found here (plain numbers, canonical strings) are in
:mod:`sppd.eval.canonical`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_BOX_COMMAND_RE = re.compile(r"\\(?:boxed|fbox)")
_EMPTY_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
_BARE_BOX_ARG_RE = re.compile(r"[^\s$]+")
# "The answer is", "the final answer is:", "Answer is" ... (last one in the text wins).
_ANSWER_IS_RE = re.compile(r"(?:final\s+)?answer\s+is\s*:?\s*", re.IGNORECASE)
_HASH_ANSWER_RE = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_DOLLAR_SEGMENT_RE = re.compile(r"(?<!\\)\$(.+?)(?<!\\)\$", re.DOTALL)
_THOUSANDS_COMMA_RE = re.compile(r"(?<=\d),(?=\d)")


def _closing_braces(text: str) -> dict[int, int]:
    """Map the index of each balanced ``{`` to the index of its ``}`` (one linear pass).

    ``\\{`` and ``\\}`` are literal braces in LaTeX and do not count towards the nesting.
    """
    closing: dict[int, int] = {}
    open_stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, whatever it is
            continue
        if ch == "{":
            open_stack.append(i)
        elif ch == "}" and open_stack:
            closing[open_stack.pop()] = i
        i += 1
    return closing


def _box_content_at(text: str, cmd_end: int, closing: dict[int, int]) -> str | None:
    """Content of the box whose command name ends at ``cmd_end``; None if it is incomplete."""
    i, n = cmd_end, len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "{":
        close = closing.get(i)
        return None if close is None else text[i + 1 : close]
    if i >= n or (i == cmd_end and text[i].isalpha()):
        # "\boxedx" is another command name; "\boxed" at the very end is truncated output.
        return None
    # "\boxed 5": the argument runs to the next space or "$" (MATH train has two of these).
    match = _BARE_BOX_ARG_RE.match(text, i)
    return match.group(0) if match else None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` / ``\\fbox{...}`` / ``\\boxed 5`` in ``text``.

    A box cut off by the end of the text (truncated generation) is skipped, so the last complete
    box before it is returned. None when there is no complete box.
    """
    cmd_ends = [m.end() for m in _BOX_COMMAND_RE.finditer(text)]
    if not cmd_ends:
        return None
    closing = _closing_braces(text)
    for cmd_end in reversed(cmd_ends):
        content = _box_content_at(text, cmd_end, closing)
        if content is not None:
            return content
    return None


def _answer_is_statement(text: str) -> str | None:
    """The value stated after the last "the answer is" in ``text`` (up to the end of its line)."""
    matches = list(_ANSWER_IS_RE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :]
    line = rest.split("\n", 1)[0]
    # A sentence may go on after the answer: "The answer is 5. Next we..." -> "5".
    line = re.split(r"\.\s", line, maxsplit=1)[0]
    return line


def clean_answer(answer: str) -> str:
    """Strip the wrapping a stated answer often carries.

    Surrounding spaces, ``$...$``, ``\\(...\\)``, ``\\[...\\]``, markdown ``**...**`` and
    trailing ``.``/``,``/``;`` go: `` $\\frac{1}{2}$. `` becomes ``\\frac{1}{2}``.
    """
    s = answer.strip()
    for _ in range(4):  # a few rounds: "**$5$.**" -> "$5$." -> "$5$" -> "5"
        before = s
        if s.startswith("**") and s.endswith("**") and len(s) >= 4:
            s = s[2:-2]
        if s.startswith("\\(") and s.endswith("\\)"):
            s = s[2:-2]
        if s.startswith("\\[") and s.endswith("\\]"):
            s = s[2:-2]
        s = s.strip().rstrip(".,;").strip()
        # Strip matching "$" runs at once (a loop over "$$$$..." would be quadratic).
        dollars = min(len(s) - len(s.lstrip("$")), len(s) - len(s.rstrip("$")))
        if dollars:
            s = s[dollars : len(s) - dollars].strip()
        if s == before:
            break
    return s


def extract_answer(text: str) -> str:
    """Final answer stated in a model's solution, cleaned; ``""`` when none is stated.

    Order: last complete box, then the last "The answer is ..." statement, then ``#### x``.
    """
    for finder in (last_boxed, _answer_is_statement, _hash_answer):
        found = finder(text)
        if found is not None:
            # "The answer is \boxed{}." states nothing: the empty box must not become the answer.
            cleaned = clean_answer(_EMPTY_BOX_RE.sub("", found))
            if cleaned:
                return cleaned
    return ""


def _hash_answer(text: str) -> str | None:
    matches = _HASH_ANSWER_RE.findall(text)
    return matches[-1] if matches else None


# --------------------------------------------------------------------------- golds per benchmark


def gsm8k_gold(answer_field: str) -> str:
    """GSM8K gold: the text after ``####``, thousands separators removed (``1,000`` -> ``1000``)."""
    if "####" not in answer_field:
        raise ValueError("GSM8K answer has no '####' line")
    value = answer_field.rsplit("####", 1)[1].strip()
    return _THOUSANDS_COMMA_RE.sub("", value)


def boxed_gold(solution: str) -> str:
    """MATH / OCW gold: the content of the solution's last box."""
    content = last_boxed(solution)
    if content is None:
        raise ValueError("solution has no complete \\boxed{...}")
    return content.strip()


def strip_dollars(text: str) -> str:
    """Remove unescaped ``$`` signs (kept: ``\\$``), then surrounding spaces."""
    return _UNESCAPED_DOLLAR_RE.sub("", text).strip()


def olympiadbench_gold(final_answer: Sequence[str] | str) -> str:
    """OlympiadBench gold: ``final_answer[0]`` with ``$`` removed.

    Multi-answer golds such as ``"$69$,$84$"`` become ``"69,84"``; a list with several strings is
    joined with ``", "``.
    """
    if isinstance(final_answer, str):
        final_answer = [final_answer]
    if not final_answer:
        raise ValueError("OlympiadBench final_answer is empty")
    return ", ".join(strip_dollars(part) for part in final_answer)


def gaokao_gold(answer: str) -> str:
    """Gaokao2023-en gold from its ``$...$`` LaTeX answer.

    When the answer starts with a ``$...$`` segment, the segments are the answer and the text
    between them is a separator: ``"$48$, $384$"`` -> ``"48, 384"``, ``"$5$ or $9$"`` -> ``"5, 9"``,
    ``"$145$solution:"`` -> ``"145"``. Otherwise (``"A"``) the ``$`` signs are dropped and the
    text kept. A bare length unit after a number goes (:func:`strip_bare_unit`: ``"20 $cm^{2}$"``
    -> ``"20"``). Two records have an empty answer; their gold is ``""``.
    """
    s = answer.strip()
    if s.startswith("$"):
        segments = [seg.strip() for seg in _DOLLAR_SEGMENT_RE.findall(s)]
        segments = [seg for seg in segments if seg]
        if segments:
            return strip_bare_unit(", ".join(segments))
    return strip_bare_unit(strip_dollars(s))


# "20 cm^{2}", "22.1cm^{2}", "576\pi\;m^{2}": math-verify reads a bare unit as variables (c*m**2),
# so no plain answer could match. A one-letter unit needs an exponent or a space before it:
# "6m" and "2s" are answers in terms of a variable m or s.
_BARE_UNIT_RE = re.compile(r"(?P<value>.*?)(?P<gap>(?:\s|\\[;,: ])*)(?P<unit>cm|mm|km|dm|m)(?P<power>\^\{?[23]\}?)?")
_LATEX_COMMAND_RE = re.compile(r"\\[a-zA-Z]+")


def strip_bare_unit(gold: str) -> str:
    """``gold`` without a trailing bare length unit, when what is left is a number (``36\\sqrt{7}``).

    Left unchanged when the part before the unit has letters of its own (``x = 4 m``), or the
    unit is a lone ``m`` written without a space or an exponent (``6m``: m may be a variable).
    """
    match = _BARE_UNIT_RE.fullmatch(gold)
    if match is None:
        return gold
    value = match.group("value").strip()
    if not value or re.search(r"[a-zA-Z]", _LATEX_COMMAND_RE.sub("", value)):
        return gold
    if match.group("unit") == "m" and not (match.group("gap") or match.group("power")):
        return gold
    return value
