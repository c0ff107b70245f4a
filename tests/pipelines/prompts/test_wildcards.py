"""Dynamic prompts: variants and wildcards drawn per seed, and what the studio refuses at submit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.prompts.wildcards import MAX_DEPTH, draw, is_dynamic, wildcard_files, wildcard_folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "models" / "wildcards"
    (root / "animals").mkdir(parents=True)
    (root / "colors.txt").write_text("# a comment\nred\n\ngreen\nblue\n")
    (root / "animals" / "cats.txt").write_text("tabby\n__colors__ siamese\n")
    (root / "animals" / "dogs.txt").write_text("corgi\n")
    (root / "loop.txt").write_text("a __loop2__\n")
    (root / "loop2.txt").write_text("b __loop__\n")
    return root


def test_wildcards_folders_are_found_as_the_layouts_keep_them(tmp_path: Path, folder: Path) -> None:
    webui = tmp_path / "webui"
    (webui / "extensions" / "sd-dynamic-prompts" / "wildcards").mkdir(parents=True)
    found = wildcard_folders([tmp_path / "models", webui, tmp_path / "nowhere"])
    assert found == [folder, webui / "extensions" / "sd-dynamic-prompts" / "wildcards"]


def test_a_seed_always_draws_the_same_prompt_and_seeds_differ(folder: Path) -> None:
    text = "a {cat|dog|bird} in __colors__, {2$$ and $$red|green|blue}"
    files = wildcard_files([text], [folder])
    assert files == {"colors": str(folder / "colors.txt")}
    drawn = [draw(text, seed, files) for seed in range(12)]
    assert drawn == [draw(text, seed, files) for seed in range(12)]
    assert len(set(drawn)) > 3
    assert all(p.startswith("a ") and any(c in p for c in ("red", "green", "blue")) and "comment" not in p
               for p in drawn)
    assert all(" and " in p.split(", ")[1] for p in drawn)


def test_wildcards_that_name_others_and_globs_reach_every_file(folder: Path) -> None:
    files = wildcard_files(["__animals/*__"], [folder])
    assert set(files) == {"animals/cats", "animals/dogs", "colors"}
    assert {draw("__animals/*__", seed, files) for seed in range(30)} >= {"tabby", "corgi"}


def test_prompt_syntax_of_a1111_passes_through_untouched(folder: Path) -> None:
    text = r"(word:1.3) [from:to:0.5] [a|b] \(x\) <lora:ink:0.8> BREAK {cat|cat}"
    assert draw(text, 1, {}) == r"(word:1.3) [from:to:0.5] [a|b] \(x\) <lora:ink:0.8> BREAK cat"
    assert not is_dynamic("a (cat:1.2) # not a comment here") and draw("a # b", 1, {}) == "a # b"


@pytest.mark.parametrize(("text", "words"), [
    ("a __colour__", "unknown wildcard __colour__; closest: colors"),
    ("__loop__", "refers back to itself: __loop__ → __loop2__ → __loop__"),
    ("a {cat|dog", "cannot be read"),
    ("{" * (MAX_DEPTH + 1) + "a" + "}" * (MAX_DEPTH + 1), "nests"),
    ("{" * 10_000 + "a", "nests"),
    ("__zebras/*__", "no wildcard matches"),
    ("__../secret__", "unknown wildcard"),
])
def test_a_prompt_that_cannot_be_drawn_is_refused_by_what_is_wrong(folder: Path, text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace("[", r"\[")):
        wildcard_files([text], [folder])


def test_wildcards_that_would_grow_the_prompt_without_bound_are_refused(tmp_path: Path) -> None:
    for level in range(8):  # each file names the next five times: 5**8 copies at the bottom
        (tmp_path / f"w{level}.txt").write_text(" ".join([f"__w{level + 1}__"] * 5) + "\n")
    (tmp_path / "w8.txt").write_text("x" * 100 + "\n")
    with pytest.raises(ValueError, match="over 200,000 characters"):
        wildcard_files(["__w0__"], [tmp_path])
    assert set(wildcard_files(["__w6__"], [tmp_path])) == {"w6", "w7", "w8"}
