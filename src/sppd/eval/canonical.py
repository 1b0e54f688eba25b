"""Comparable forms of answer strings, for the grader's fast path (no sympy, no math-verify).

Plain numbers: :func:`parse_plain_number` reads ``1,234``, ``-0.5``, ``3/4``, ``\\frac{3}{4}``,
``50\\%``, ``4.5e33`` into an exact ``Fraction`` with a regular grammar (linear in the input), and
:func:`numbers_equal` compares two of them (percent readings, relative precision for scientific
notation). :func:`canonical_answer` strips layout-only LaTeX and text wrappers so two spellings of
one answer compare equal as strings. The answer strings themselves come from
:mod:`sppd.eval.answers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from sppd.eval.answers import clean_answer

# --------------------------------------------------------------------------- plain numbers

_PLAIN_NUMBER_MAX_CHARS = 64  # longer "numbers" go to math-verify (and int() has a digit cap)
_DECIMAL_RE = re.compile(r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+")
_SLASH_FRACTION_RE = re.compile(r"(\d+)\s*/\s*(\d+)")
_LATEX_FRACTION_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+)\s*\}\s*\{\s*(-?\d+)\s*\}")
_SHORT_FRACTION_RE = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")  # \frac12
_THIN_SPACE_SEPARATOR_RE = re.compile(r",\\!\s*")
# Scientific notation: "4.5e33", "1E-5" (OCW golds, Python-style answers) and "4.5 \times 10^{33}".
_E_NOTATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)[eE]([+-]?\d{1,6})")
_TIMES_TEN_RE = re.compile(
    r"(\d+(?:\.\d+)?|\.\d+)\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*(?:\{\s*([+-]?\d{1,6})\s*\}|(\d))"
)
_MAX_EXPONENT = 400  # 10**400 is cheap; far larger powers are left to math-verify's timeouts
_DEGREE_SUFFIXES = ("^{\\circ}", "^\\circ", "\\circ")
_PERCENT_SUFFIXES = ("\\%", "%")


@dataclass(frozen=True)
class PlainNumber:
    """A number written plainly: integer, decimal, ``a/b`` or ``\\frac{a}{b}``, maybe a percent.

    ``value`` is exact; for ``50\\%`` it is 50 and ``percent`` is True.
    """

    value: Fraction
    decimal: bool
    percent: bool
    scientific: bool = False
    """Written as ``a e b`` / ``a \\times 10^{b}``: compared to a relative precision, not to 6 places."""


def parse_plain_number(answer: str) -> PlainNumber | None:
    """Parse a plainly written number; None for anything else (expressions, text, units).

    Accepted: an optional sign, then ``1234``, ``1,234`` / ``1{,}234`` (thousands separators),
    ``12.5``, ``.5``, ``3/4``, ``\\frac{3}{4}`` / ``\\dfrac`` / ``\\tfrac`` / ``\\frac34``,
    ``4.5e33`` / ``1E-5`` / ``4.5 \\times 10^{33}`` / ``4.5\\cdot10^{33}`` (exponents up to 400),
    optionally followed by ``\\%`` or ``^\\circ``; a leading ``\\$`` is ignored. This is a regular
    grammar read by ``re``: nothing is evaluated.
    """
    if len(answer) > 2 * _PLAIN_NUMBER_MAX_CHARS:  # cheap reject before any string work
        return None
    s = clean_answer(answer)
    if len(s) > _PLAIN_NUMBER_MAX_CHARS:
        return None
    # MATH writes thousands as "10{,}000" or "11,\\! 111"; "\\!" and "\\," are thin spaces.
    s = _THIN_SPACE_SEPARATOR_RE.sub(",", s.replace("{,}", ","))
    s = s.replace("\\!", "").replace("\\,", "").strip()
    s = s.removeprefix("\\$").strip()
    percent = False
    for suffix in _PERCENT_SUFFIXES:
        if s.endswith(suffix):
            s, percent = s[: -len(suffix)].strip(), True
            break
    for suffix in _DEGREE_SUFFIXES:
        if not percent and s.endswith(suffix):
            s = s[: -len(suffix)].strip()
            break
    sign = 1
    if s and s[0] in "+-":
        sign, s = (-1 if s[0] == "-" else 1), s[1:].strip()
    scientific = _scientific_number(s)
    if scientific is not None:
        return PlainNumber(sign * scientific, True, percent, scientific=True)
    parsed = _unsigned_number(s)
    if parsed is None:
        return None
    value, decimal = parsed
    return PlainNumber(sign * value, decimal, percent)


def _scientific_number(s: str) -> Fraction | None:
    """Exact value of an unsigned ``4.5e33`` / ``4.5 \\times 10^{33}``, or None."""
    match = _E_NOTATION_RE.fullmatch(s) or _TIMES_TEN_RE.fullmatch(s)
    if match is None:
        return None
    mantissa, exponent = match.group(1), int(next(g for g in match.groups()[1:] if g is not None))
    if abs(exponent) > _MAX_EXPONENT:  # never build a huge integer from untrusted text
        return None
    return Fraction(mantissa) * Fraction(10) ** exponent


def _unsigned_number(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_decimal) of an unsigned plain number, or None."""
    if _DECIMAL_RE.fullmatch(s):
        return Fraction(s.replace(",", "")), "." in s
    for pattern in (_SLASH_FRACTION_RE, _LATEX_FRACTION_RE, _SHORT_FRACTION_RE):
        match = pattern.fullmatch(s)
        if match:
            numerator, denominator = int(match.group(1)), int(match.group(2))
            if denominator == 0:
                return None
            return Fraction(numerator, denominator), False
    return None


def numbers_equal(gold: PlainNumber, pred: PlainNumber) -> bool:
    """Equality of plain numbers, following math-verify's conventions.

    Exact when both are integers or fractions; when either side is a decimal, both are rounded
    to 6 places first (math-verify's ``float_rounding``), so ``1/3 == 0.333333`` but not
    ``0.333``. A percent matches its face value or its value over 100 (``50\\% == 50 == 0.5``).
    Deliberately more lenient than math-verify, which accepts the face value of integer percents
    only (it grades ``12.5\\%`` against ``12.5`` wrong); golds such as OlympiadBench's ``62.5%``
    are commonly answered ``62.5``, and the Qwen2.5-Math evaluator strips ``%`` altogether.
    When either side is in scientific notation the values must agree to a relative 1e-6 instead
    (6 decimal places would make ``1e-8 == 3e-8``).
    """
    decimal = gold.decimal or pred.decimal
    scientific = gold.scientific or pred.scientific
    for g in _percent_readings(gold):
        for p in _percent_readings(pred):
            if scientific:
                same = abs(g - p) <= _RELATIVE_PRECISION * max(abs(g), abs(p))
            else:
                same = (round(g, 6) == round(p, 6)) if decimal else g == p
            if same:
                return True
    return False


_RELATIVE_PRECISION = Fraction(1, 10**6)


def _percent_readings(number: PlainNumber) -> tuple:
    return (number.value, number.value / 100) if number.percent else (number.value,)


# --------------------------------------------------------------------------- canonical strings

# Layout-only LaTeX: sizing of delimiters (not \leftarrow), thin spaces, display style.
_LATEX_NOISE_RE = re.compile(r"\\(?:left|right|displaystyle)(?![a-zA-Z])|\\[!,;: ]")
_TEXT_WRAPPERS = ("\\text{", "\\textbf{", "\\mathrm{", "\\mbox{")
_SPACED_WRAPPER_RE = re.compile(r"\\(text|textbf|mathrm|mbox)\s+\{")  # "\text {red}" (OCW) is "\text{red}"


def canonical_answer(answer: str) -> str:
    """A normal form of an answer string used as a cheap equality key.

    Plain numbers become their exact rational value (``"0.50"``, ``"\\frac{1}{2}"`` and ``"1/2"``
    all give ``"1/2"``, with ``%`` kept as a suffix); other answers lose only layout that never
    changes meaning: ``$``, spaces, ``\\left``/``\\right``, thin spaces, ``\\dfrac``/``\\tfrac``
    (-> ``\\frac``), ``^\\circ`` and ``\\text{...}`` wrappers.
    """
    s = clean_answer(answer)
    number = parse_plain_number(s)
    if number is not None:
        return f"{number.value}{'%' if number.percent else ''}"
    s = _LATEX_NOISE_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = _SPACED_WRAPPER_RE.sub(r"\\\1{", s)
    for wrapper in _TEXT_WRAPPERS:
        s = _unwrap_command(s, wrapper)
    return "".join(s.split()).rstrip(".")


def _unwrap_command(s: str, opener: str) -> str:
    """Replace ``\\text{abc}`` (for ``opener='\\text{'``) by ``abc``; unbalanced text is kept."""
    out: list[str] = []
    i = 0
    while True:
        j = s.find(opener, i)
        if j == -1:
            out.append(s[i:])
            return "".join(out)
        depth, k = 1, j + len(opener)
        while k < len(s) and depth:
            depth += {"{": 1, "}": -1}.get(s[k], 0)
            k += 1
        if depth:  # unbalanced: leave the rest untouched
            out.append(s[i:])
            return "".join(out)
        out.append(s[i:j])
        out.append(s[j + len(opener) : k - 1])
        i = k
