"""A1111's prompt syntax, parsed in one pass with explicit stacks (no recursion, linear time, whatever the nesting).

Emphasis (`emphasis`): `(word)` multiplies the attention weight of its words by 1.1, `[word]` divides it by 1.1,
`(word:1.3)` sets the factor, `\\(` `\\)` `\\[` `\\]` `\\\\` are the characters themselves, and `BREAK` (a word of its
own) starts a new 75-token chunk. A bracket that never closes weighs the rest of the prompt, one that never opened is
text, as in A1111.

Scheduling (`schedule`): `[from:to:when]` shows `from` until step `when` and `to` after it; `[to:when]` adds `to`
after `when`, `[from::when]` removes `from` after it; `when` below 1 is a fraction of the steps, else a step number.
`[a|b|c]` alternates every step. Anything else in square brackets is left for emphasis (`[word]`).

Written as a scanner rather than with a grammar library: A1111's rules for unbalanced brackets (an unclosed one
weighs the rest, a stray closer is text) are not a context-free grammar, and a scanner with explicit stacks keeps
a 10,000-deep nesting from recursing. Written from the syntax's public description and examples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

EMPHASIS = 1.1
_NUMBER = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)")  # after ':' inside (...): "1.3)" or " .5 )"
_BREAK = re.compile(r"\s*\bBREAK\b\s*")
_WHEN = re.compile(r"\s*(\d+\.?\d*|\.\d+)\s*")


class Run(NamedTuple):
    text: str
    weight: float  # the attention multiplier of these words
    is_break: bool = False  # a BREAK: the next words start a new chunk


def emphasis(text: str) -> list[Run]:
    """`text` as runs of equal weight, in order; BREAKs as runs of their own."""
    chunks: list[str] = []
    ranges: list[tuple[int, int, float]] = []  # (first chunk, chunk after the last, factor)
    opened: dict[str, list[int]] = {"(": [], "[": []}
    buf: list[str] = []

    def flush() -> None:
        if buf:
            chunks.append("".join(buf))
            buf.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and text[i + 1] in "()[]\\":
            buf.append(text[i + 1])
            i += 2
            continue
        if c in "([":
            flush()
            opened[c].append(len(chunks))
        elif c == ":" and opened["("] and (number := _NUMBER.match(text, i + 1)):
            flush()
            ranges.append((opened["("].pop(), len(chunks), float(number[1])))
            i = number.end()
            continue
        elif c == ")" and opened["("]:
            flush()
            ranges.append((opened["("].pop(), len(chunks), EMPHASIS))
        elif c == "]" and opened["["]:
            flush()
            ranges.append((opened["["].pop(), len(chunks), 1 / EMPHASIS))
        else:
            buf.append(c)
        i += 1
    flush()
    ranges += [(start, len(chunks), EMPHASIS) for start in opened["("]]  # never closed: the rest of the prompt
    ranges += [(start, len(chunks), 1 / EMPHASIS) for start in opened["["]]
    return _split_breaks(_merged(chunks, _weights(len(chunks), ranges)))


def _weights(count: int, ranges: list[tuple[int, int, float]]) -> list[float]:
    """Each chunk's product of the factors of the ranges holding it, by prefix sums of logarithms (and counts of
    zeros and negative factors): one pass, however many brackets nest."""
    logs, zeros, negatives = [0.0] * (count + 1), [0] * (count + 1), [0] * (count + 1)
    for start, end, factor in ranges:
        if factor == 0:
            zeros[start] += 1
            zeros[end] -= 1
            continue
        logs[start] += math.log(abs(factor))
        logs[end] -= math.log(abs(factor))
        if factor < 0:
            negatives[start] += 1
            negatives[end] -= 1
    weights, log, zero, negative = [], 0.0, 0, 0
    for k in range(count):
        log, zero, negative = log + logs[k], zero + zeros[k], negative + negatives[k]
        weight = 0.0 if zero else (-1.0) ** negative * math.exp(min(log, 700.0))
        weights.append(weight)
    return weights


def _merged(chunks: list[str], weights: list[float]) -> list[Run]:
    """Neighbouring chunks of one weight as one run (texts joined once: no quadratic concatenation)."""
    runs: list[Run] = []
    group: list[str] = []
    weight = 1.0
    for text, w in zip(chunks, weights, strict=True):
        if group and not math.isclose(weight, w, rel_tol=1e-9, abs_tol=1e-12):  # sums of logs differ in a last bit
            runs.append(Run("".join(group), weight))
            group = []
        if not group:
            weight = w
        group.append(text)
    if group:
        runs.append(Run("".join(group), weight))
    return runs or [Run("", 1.0)]


def _split_breaks(runs: list[Run]) -> list[Run]:
    out: list[Run] = []
    for run in runs:
        parts = _BREAK.split(run.text)
        for index, part in enumerate(parts):
            if index:
                out.append(Run("BREAK", -1.0, is_break=True))
            if part:
                out.append(Run(part, run.weight))
    return out or [Run("", 1.0)]


# -- scheduling -------------------------------------------------------------------------------------------------
@dataclass
class _Frame:
    """An open `[`: its parts so far, split at top-level `:` or `|`."""
    parts: list[list[object]] = field(default_factory=lambda: [[]])
    separators: list[str] = field(default_factory=list)
    parens: int = 0  # `(` open since this bracket: their `:` belongs to emphasis


@dataclass(frozen=True)
class _Edit:
    before: list[object]
    after: list[object]
    when: float


@dataclass(frozen=True)
class _Alternate:
    options: list[list[object]]


def schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """The prompt each step sees: (last step, text) pairs in order, steps counted from 1; the emphasis syntax is
    kept for `emphasis`. A prompt without editing or alternation is one pair."""
    nodes = _parse(prompt)
    switches = set()
    alternates = False
    pending: list[object] = list(nodes)
    while pending:  # every switch step, without recursion
        node = pending.pop()
        if isinstance(node, _Edit):
            switches.add(_step_of(node.when, steps))
            pending += node.before + node.after
        elif isinstance(node, _Alternate):
            alternates = True
            pending += [n for option in node.options for n in option]
    ends = range(1, steps + 1) if alternates else sorted({s for s in switches if 1 <= s < steps} | {steps})
    out: list[tuple[int, str]] = []
    for end in ends:
        text = _render(nodes, end, steps)
        if out and out[-1][1] == text:
            out[-1] = (end, text)
        else:
            out.append((end, text))
    return out


def _step_of(when: float, steps: int) -> int:
    return int(when * steps) if when < 1 else int(when)


def _parse(prompt: str) -> list[object]:
    root = _Frame()
    stack = [root]
    i, n = 0, len(prompt)
    while i < n:
        c, top = prompt[i], stack[-1]
        if c == "\\" and i + 1 < n:
            top.parts[-1].append(prompt[i:i + 2])  # kept escaped: emphasis reads it
            i += 2
            continue
        if c == "[":
            stack.append(_Frame())
        elif c == "]" and top is not root:
            stack.pop()
            stack[-1].parts[-1].extend(_closed(top))
        elif c in ":|" and top is not root and not top.parens:
            top.separators.append(c)
            top.parts.append([])
        else:
            if c == "(":
                top.parens += 1
            elif c == ")" and top.parens:
                top.parens -= 1
            top.parts[-1].append(c)
        i += 1
    while len(stack) > 1:  # never closed: the brackets are text
        frame = stack.pop()
        stack[-1].parts[-1].extend(["[", *_joined(frame)])
    return root.parts[0]


def _closed(frame: _Frame) -> list[object]:
    """What a closed `[ … ]` stands for: an edit, an alternation, or (as text) an emphasis bracket."""
    seps, parts = frame.separators, frame.parts
    if seps and all(s == "|" for s in seps):
        return [_Alternate(parts)]
    if seps in ([":"], [":", ":"]) and all(isinstance(p, str) for p in parts[-1]):
        when = _WHEN.fullmatch("".join(parts[-1]))  # type: ignore[arg-type]
        if when:
            before, after = (parts[0], parts[1]) if len(parts) == 3 else ([], parts[0])
            return [_Edit(before, after, float(when[1]))]
    return ["[", *_joined(frame), "]"]


def _joined(frame: _Frame) -> list[object]:
    out: list[object] = list(frame.parts[0])
    for sep, part in zip(frame.separators, frame.parts[1:], strict=True):
        out += [sep, *part]
    return out


def _render(nodes: list[object], step: int, steps: int) -> str:
    """The text of `nodes` at `step`, with an explicit stack (nesting may be deep)."""
    out: list[str] = []
    stack: list[object] = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Edit):
            stack += reversed(node.before if step <= _step_of(node.when, steps) else node.after)
        elif isinstance(node, _Alternate):
            stack += reversed(node.options[(step - 1) % len(node.options)])
    return "".join(out)
