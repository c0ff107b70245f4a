"""Prompt styles: applied and taken back out as A1111 does it, A1111's styles.csv both ways, per user."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.styles import MAX_STYLES, Style, StyleError, StyleStore, apply, extract, read_csv, write_csv

CINEMATIC = Style("cinematic", "cinematic still of {prompt}, film grain", "cartoon, {prompt}")
MOODY = Style("moody", "dark, moody lighting", "bright")


@pytest.mark.parametrize(("styles", "prompt", "negative", "expected"), [
    ([CINEMATIC], "a cat", "", ("cinematic still of a cat, film grain", "cartoon, ")),
    ([MOODY], "a cat", "", ("a cat, dark, moody lighting", "bright")),
    ([MOODY], "", "blurry", ("dark, moody lighting", "blurry, bright")),
    ([CINEMATIC, MOODY], "a cat", "blurry", ("cinematic still of a cat, film grain, dark, moody lighting",
                                              "cartoon, blurry, bright")),
    ([Style("twice", "{prompt} and {prompt}")], "a cat", "", ("a cat and a cat", "")),
])
def test_styles_apply_into_their_placeholder_or_after_a_comma_and_come_back_out(styles, prompt, negative,
                                                                                expected) -> None:
    assert apply(styles, prompt, negative) == expected
    assert extract(styles, *expected) == (prompt, negative)


def test_a_prompt_that_does_not_hold_a_style_as_it_reads_now_is_not_taken_apart() -> None:
    assert extract([MOODY], "a cat, bright moody lighting", "bright") is None
    assert extract([CINEMATIC], "a cat", "") is None
    assert extract([Style("twice", "{prompt} and {prompt}")], "a cat and a dog", "") is None
    changed = Style("moody", "dark, moodier lighting", "bright")
    assert extract([changed], *apply([MOODY], "a cat", "")) is None


def test_twenty_styles_come_back_out_of_a_long_prompt() -> None:
    prompt = ", ".join(["word"] * 1500)
    styles = [Style(f"s{i}", f"{{prompt}} in style {i}, detail" if i % 2 else "more, detail") for i in range(20)]
    expanded = apply(styles, prompt, "")
    assert extract(styles, *expanded) == (prompt, "")


def test_a1111s_styles_csv_reads_and_writes_back(tmp_path: Path) -> None:
    text = ('name,prompt,negative_prompt\n'
            'None,,\n'
            'cinematic,"cinematic still of {prompt}, film grain","cartoon, {prompt}"\n'
            '"quoted, name",plain,\n'
            'moody,"dark, ""moody"" lighting",bright\n')
    styles = read_csv(("\ufeff" + text).encode())  # A1111 on Windows writes a BOM
    assert [s.name for s in styles] == ["cinematic", "quoted, name", "moody"]
    assert styles[2].prompt == 'dark, "moody" lighting' and styles[0].negative_prompt == "cartoon, {prompt}"
    assert read_csv(write_csv(styles)) == styles
    assert read_csv(b"name,prompt\nonly,a prompt\n") == [Style("only", "a prompt", "")]


@pytest.mark.parametrize(("data", "words"), [
    (b"title,prompt\nx,y\n", "no `name` column"),
    (b"\xff\xfe\x00n", "not UTF-8"),
    ("name,prompt\n" + "x," + "y" * 6000 + "\n", "line 2 of the styles file"),
    (b"name,prompt\n" + b"".join(b"s%d,p\n" % i for i in range(MAX_STYLES + 1)), f"more than {MAX_STYLES}"),
    (b"x" * 3_000_000, "bytes; at most"),
    ('name\n"bad\x00name"\n', "control characters"),
])
def test_a_styles_csv_that_cannot_be_taken_is_refused_by_what_is_wrong(data, words) -> None:
    with pytest.raises(StyleError, match=words):
        read_csv(data.encode() if isinstance(data, str) else data)


def test_each_user_keeps_their_own_styles_and_a_job_names_known_ones(tmp_path: Path) -> None:
    store = StyleStore(tmp_path)
    store.save_all("ann", [CINEMATIC, MOODY])
    store.save("bob", Style("moody", "bob's moody"))
    assert store.names("ann") == ["cinematic", "moody"] and store.names("bob") == ["moody"]
    assert store.chosen("ann", ["moody", "cinematic"]) == [MOODY, CINEMATIC]
    assert store.chosen("bob", ["moody"])[0].prompt == "bob's moody"
    with pytest.raises(StyleError, match="unknown style 'cinematic'; you"):
        store.chosen("carl", ["cinematic"])
    with pytest.raises(StyleError, match="closest: cinematic"):
        store.chosen("ann", ["cinematik"])
    with pytest.raises(StyleError, match="unknown style 'cinematic'"):
        store.chosen("bob", ["cinematic"])  # ann's style is not bob's
    store.delete("ann", "moody")
    assert store.names("ann") == ["cinematic"] and store.names("bob") == ["moody"]
    with pytest.raises(StyleError, match="no style named"):
        store.delete("ann", "moody")
    store.close()


def test_an_import_past_the_limit_changes_nothing(tmp_path: Path) -> None:
    store = StyleStore(tmp_path)
    store.save_all("ann", [Style(f"s{i}", "x") for i in range(MAX_STYLES - 1)])
    with pytest.raises(StyleError, match="more than the"):
        store.save_all("ann", [Style("a", "changed"), Style("s0", "changed"), Style("b", "y")])
    assert len(store.names("ann")) == MAX_STYLES - 1 and store.chosen("ann", ["s0"])[0].prompt == "x"
    store.close()
