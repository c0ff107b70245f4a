"""A1111's prompt syntax: the weights its documented examples give, prompt editing and alternation per step, and
hostile prompts handled in linear time."""

from __future__ import annotations

import time

import pytest

from pipelines.prompts.syntax import Run, emphasis, schedule

# A1111's documented examples of its attention syntax (its prompt parser's docstring), and a few more
CASES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
      ("sky", 1.4641), (".", 1.1)]),
    ("((word))", [("word", 1.21)]),
    ("[word]", [("word", 1 / 1.1)]),
    ("[[word]]", [("word", 1 / 1.21)]),
    ("(word:1.3)", [("word", 1.3)]),
    ("(word: 0.5 )", [("word", 0.5)]),
    ("(word:0)", [("word", 0.0)]),
    ("(word:-1)", [("word", -1.0)]),
    ("stray) and ]", [("stray) and ]", 1.0)]),
    ("a:b (c:d)", [("a:b ", 1.0), ("c:d", 1.1)]),  # a colon without a number is text
    (r"\\ back\slash", [("\\ back\\slash", 1.0)]),
    ("", [("", 1.0)]),
]


@pytest.mark.parametrize(("prompt", "expected"), CASES)
def test_emphasis_gives_the_weights_a1111_documents(prompt: str, expected: list[tuple[str, float]]) -> None:
    runs = emphasis(prompt)
    assert [r.text for r in runs] == [text for text, _ in expected]
    assert [r.weight for r in runs] == pytest.approx([w for _, w in expected])


def test_break_starts_a_new_chunk_wherever_it_stands() -> None:
    assert emphasis("a cat BREAK (a dog)") == [Run("a cat", 1.0), Run("BREAK", -1.0, True), Run("a dog", 1.1)]
    assert emphasis("(left BREAK right)")[1].is_break
    assert [r.text for r in emphasis("BREAKFAST")] == ["BREAKFAST"]  # a word of its own only


STEPS = 20
SCHEDULES = [
    ("a cat", [(20, "a cat")]),
    ("a [cat:dog:0.25] in snow", [(5, "a cat in snow"), (20, "a dog in snow")]),
    ("a [cat:dog:10] in snow", [(10, "a cat in snow"), (20, "a dog in snow")]),
    ("a [dog:5] house", [(5, "a  house"), (20, "a dog house")]),
    ("a [dog::5] house", [(5, "a dog house"), (20, "a  house")]),
    ("[a:[b:c:10]:5]", [(5, "a"), (10, "b"), (20, "c")]),
    ("[(cat:1.3):dog:0.5]", [(10, "(cat:1.3)"), (20, "dog")]),  # emphasis inside is kept for the encoder
    ("[word] and [a:b]", [(20, "[word] and [a:b]")]),  # de-emphasis and a non-number `when` are text
    ("[unclosed:x:3", [(20, "[unclosed:x:3")]),
    (r"\[cat:dog:0.5\]", [(20, r"\[cat:dog:0.5\]")]),
]


@pytest.mark.parametrize(("prompt", "expected"), SCHEDULES)
def test_prompt_editing_switches_at_its_step(prompt: str, expected: list[tuple[int, str]]) -> None:
    assert schedule(prompt, STEPS) == expected


def test_alternation_switches_every_step() -> None:
    assert schedule("a [cat|dog] photo", 4) == [(1, "a cat photo"), (2, "a dog photo"), (3, "a cat photo"),
                                                (4, "a dog photo")]
    assert schedule("[a|b|c]", 3) == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize("prompt", ["(" * 10_000 + "x" + ")" * 10_000, "[" * 10_000 + "x", "(a" * 10_000,
                                    "[a:" * 5_000 + "b" + ":3]" * 5_000, "\\" * 100_001, ":" * 100_000 + ")"])
def test_hostile_prompts_are_bounded(prompt: str) -> None:
    start = time.perf_counter()
    runs = emphasis(prompt)
    steps = schedule(prompt, 20)
    assert time.perf_counter() - start < 2 and runs and steps  # no recursion error, no hang


def test_parsing_is_linear_in_the_prompts_length() -> None:
    def took(size: int) -> float:  # the best of three: a busy machine slows one run, not all
        prompt = "(a [b:c:0.5] (d:1.2) [e|f] \\( " * size
        times = []
        for _ in range(3):
            start = time.perf_counter()
            emphasis(prompt)
            schedule(prompt, 20)
            times.append(time.perf_counter() - start)
        return min(times)

    small, large = took(2_000), took(8_000)
    assert large < small * 8  # 4× the text: about 4× the time, far from the 16× of a quadratic parser


def test_many_runs_of_one_weight_merge_in_linear_time() -> None:
    def took(size: int) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            runs = emphasis("(a)(b)" * size)
            times.append(time.perf_counter() - start)
        assert len(runs) == 1 and len(runs[0].text) == 2 * size
        return min(times)

    small, large = took(20_000), took(80_000)
    assert large < small * 8
