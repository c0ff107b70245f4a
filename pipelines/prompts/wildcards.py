"""Dynamic prompts, read by the `dynamicprompts` library as A1111's Dynamic Prompts extension reads them: variants
`{a|b|c}`, `{2$$a|b|c}` (two of them), weighted `{0.9::a|0.1::b}`, and `__name__` wildcards, whose values are the
lines of `name.txt` in a wildcards folder of the model library (`__animals/cats__` is `animals/cats.txt`; `*`
globs). Each picture's prompt is drawn from its own seed, so a seed always gives the same prompt again.

A prompt without `{` or `__` is left alone (dynamicprompts would also read `#` as a comment). The studio checks a
prompt at submit (`wildcard_files`): the syntax, the nesting, every wildcard it reaches (through wildcards that name
others), none that refers back to itself, and how long the prompt could grow; the pipeline then draws (`draw`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

WILDCARDS = "wildcards"  # the kind of a job's wildcard files ("wildcards:NAME" → path), beside its LoRAs
MAX_DEPTH = 10  # `{` within `{`: the parser recurses, and no prompt needs more
MAX_FILE_BYTES = 1_000_000
MAX_GROWTH = 200_000  # characters a prompt could reach once every wildcard is drawn at its longest
MAX_LISTED = 20_000  # files looked at when a name must be matched against all (a glob, a hint)
# where the layouts keep wildcards, under a models root (A1111's extension's and ComfyUI's nodes' own folders too)
FOLDERS = ("wildcards", "models/wildcards", "extensions/sd-dynamic-prompts/wildcards",
           "custom_nodes/comfyui-dynamicprompts/wildcards", "custom_nodes/ComfyUI-Impact-Pack/wildcards")


def is_dynamic(text: str) -> bool:
    return "{" in text or "__" in text


def wildcard_folders(roots: Iterable[Path]) -> list[Path]:
    """The wildcard folders of the library's roots (each root as the user gave it, and its parent when it is a
    `models/` folder), those that exist, in order."""
    found: list[Path] = []
    for root in roots:
        for base in (root, root.parent) if root.name == "models" else (root,):
            for folder in FOLDERS:
                path = base / folder
                if path.is_dir() and path not in found:
                    found.append(path)
    return found


def wildcard_files(texts: Sequence[str], folders: Sequence[Path]) -> dict[str, str]:
    """The wildcard files that `texts` reach, as "name" → path. ValueError, naming the problem, for a malformed
    prompt, an unknown wildcard (with the closest names), a wildcard that refers back to itself, or wildcards that
    could make the prompt grow past MAX_GROWTH characters."""
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    catalogue: list[str] | None = None

    def names() -> list[str]:
        nonlocal catalogue
        if catalogue is None:
            catalogue = _all_names(folders)
        return catalogue

    def size_of(name: str, chain: tuple[str, ...]) -> int:
        """The longest that drawing `name` can make (memoised): its longest line with its wildcards at theirs."""
        if name in chain:
            raise ValueError("the wildcard __{}__ refers back to itself: {}".format(
                name, " → ".join(f"__{n}__" for n in (*chain[chain.index(name):], name))))
        if name in sizes:
            return sizes[name]
        matched = _matching(name, folders, names)
        longest = 0
        for match, path in matched.items():
            files[match] = str(path)
            for line in read_lines(path):
                longest = max(longest, _growth(line, f"__{match}__", (*chain, name), size_of))
        sizes[name] = longest
        return longest

    for text in texts:
        if is_dynamic(text):
            _growth(text, "the prompt", (), size_of)  # ValueError past MAX_GROWTH
    return files


def draw(text: str, seed: int, files: Mapping[str, str]) -> str:
    """`text` with its variants and wildcards drawn for `seed`, the wildcards' values read from `files`."""
    if not is_dynamic(text):
        return text
    from dynamicprompts.generators import RandomPromptGenerator
    from dynamicprompts.wildcards import WildcardManager

    values = {name: read_lines(Path(path)) for name, path in files.items()}
    generator = RandomPromptGenerator(WildcardManager(root_map={"": [values]}), seed=seed)
    try:
        return str(generator.generate(text, 1)[0])
    except Exception as e:  # noqa: BLE001 -- pyparsing and dynamicprompts raise many kinds for a malformed prompt
        raise ValueError(f"the prompt's dynamic syntax cannot be read: {e}"[:300]) from None


def read_lines(path: Path) -> list[str]:
    """A wildcard file's values: its lines, without blank ones and `#` comments (as dynamicprompts reads them)."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"the wildcard file {path.name} is over {MAX_FILE_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the wildcard file {path.name}: {type(e).__name__}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _growth(text: str, where: str, chain: tuple[str, ...], size_of: Any) -> int:
    """How long `text` can become: its own length plus, for each wildcard it names, that wildcard's longest drawn
    as many times as its variant may pick (`{3$$__a__|…}` up to three)."""
    depth = 0
    for ch in text:  # the parser recurses per level: bound it before parsing
        depth += (ch == "{") - (ch == "}")
        if depth > MAX_DEPTH:
            raise ValueError(f"{where} nests `{{` more than {MAX_DEPTH} deep")
    total = len(text)
    for name, times in _wildcards(_parsed(text, where), 1):
        total += times * size_of(name, chain)
        if total > MAX_GROWTH:
            raise ValueError(f"{where}: its wildcards could make the prompt over {MAX_GROWTH:,} characters long")
    return total


def _parsed(text: str, where: str) -> Any:
    from dynamicprompts.parser.parse import parse

    try:
        return parse(text)
    except Exception as e:  # noqa: BLE001 -- pyparsing's errors: an unclosed `{`, a bad `$$`
        raise ValueError(f"{where}: its dynamic syntax cannot be read ({e})"[:300]) from None


def _wildcards(node: Any, times: int) -> Iterable[tuple[str, int]]:
    """(name, times it may be drawn) of each wildcard in a parsed prompt."""
    from dynamicprompts.commands import SequenceCommand, VariantCommand, WildcardCommand, WrapCommand

    if isinstance(node, WildcardCommand):
        if isinstance(node.wildcard, str):
            yield node.wildcard, times
        else:
            raise ValueError("a wildcard's name must be plain text (no variants or variables in it)")
    elif isinstance(node, SequenceCommand):
        for token in node.tokens:
            yield from _wildcards(token, times)
    elif isinstance(node, VariantCommand):
        picks = max(node.min_bound or 1, node.max_bound or 1)
        for option in node.variants:
            yield from _wildcards(option.value, times * picks)
    elif isinstance(node, WrapCommand):
        yield from _wildcards(node.wrapper, times)
        yield from _wildcards(node.inner, times)


def _matching(name: str, folders: Sequence[Path], names: Any) -> dict[str, Path]:
    """The files `name` stands for: one, or every one a glob matches. ValueError for none."""
    if "*" in name or "?" in name:
        matched = {n: p for n in fnmatch.filter(names(), name) if (p := _path(n, folders)) is not None}
        if not matched:
            raise ValueError(f"no wildcard matches __{name}__")
        return matched
    path = _path(name, folders)
    if path is None:
        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else (
            "" if folders else "; the model library has no wildcards folder")
        raise ValueError(f"unknown wildcard __{name}__{hint}")
    return {name: path}


def _path(name: str, folders: Sequence[Path]) -> Path | None:
    if ".." in Path(name).parts or name.startswith(("/", "\\")):
        return None  # a name never leaves its folder
    for folder in folders:
        path = folder / f"{name}.txt"
        if path.is_file():
            return path
    return None


def _all_names(folders: Sequence[Path]) -> list[str]:
    found: list[str] = []
    for folder in folders:
        for dirname, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.endswith(".txt"):
                    found.append((Path(dirname) / filename).relative_to(folder).with_suffix("").as_posix())
                if len(found) >= MAX_LISTED:
                    return found
    return found
