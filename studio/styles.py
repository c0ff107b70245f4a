"""Prompt styles: named prompt templates, kept per user in SQLite, applied to a job's prompts at submit.

A style holds a prompt and a negative prompt. Applied, a style's text takes the user's prompt where it says
`{prompt}`, and is otherwise appended after a comma (as A1111 applies its styles); several apply in order. The job runs
the expanded prompts, and its recipe names the styles, so "Reuse settings" can take the styles back out again
(`extract`) when they still read as they did. Styles travel as A1111's `styles.csv` (columns name, prompt,
negative_prompt) both ways. The store lives in its own file (`styles.db` in the data dir).
"""

from __future__ import annotations

import csv
import difflib
import io
import sqlite3
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from studio.db import Database

DB_NAME = "styles.db"
PLACEHOLDER = "{prompt}"
MAX_NAME_CHARS = 100
MAX_TEXT_CHARS = 5_000  # a style is a phrase or a paragraph; the expanded prompt still has its own limit
MAX_STYLES = 500  # per user: A1111 collections run to a few hundred
MAX_CSV_BYTES = 2_000_000
MAX_APPLIED = 20  # styles on one job

MIGRATIONS: list[str] = [
    """
    CREATE TABLE styles (
        owner TEXT NOT NULL,
        name TEXT NOT NULL,
        prompt TEXT NOT NULL,
        negative_prompt TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (owner, name)
    );
    """,
]


class StyleError(ValueError):
    """A request the store refuses (a bad name, an unknown style, a malformed styles.csv); meant for the user."""


class StyleSaveError(RuntimeError):
    """The database could not be written or read; nothing was changed."""


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""

    def checked(self) -> Style:
        """This style as stored (trimmed name); StyleError naming what is wrong."""
        name = (self.name or "").strip()
        if not name:
            raise StyleError("give the style a name")
        if len(name) > MAX_NAME_CHARS:
            raise StyleError(f"a style name has at most {MAX_NAME_CHARS} characters, got {len(name)}")
        if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
            raise StyleError(f"the style name {name[:40]!r} holds control characters")
        for label, text in (("prompt", self.prompt), ("negative prompt", self.negative_prompt)):
            if not isinstance(text, str):
                raise StyleError(f"the style {name!r}: its {label} must be text")
            if len(text) > MAX_TEXT_CHARS:
                raise StyleError(f"the style {name!r}: its {label} is {len(text):,} characters; at most "
                                 f"{MAX_TEXT_CHARS:,}")
        return Style(name, self.prompt, self.negative_prompt)


def merge(template: str, prompt: str) -> str:
    """One style's text applied to a prompt: into its `{prompt}`, else after the prompt and a comma."""
    if PLACEHOLDER in template:
        return template.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), template.strip()) if part)


def unmerge(template: str, text: str) -> str | None:
    """The prompt that `merge(template, prompt)` turned into `text`, or None when `text` is not such a result."""
    count = template.count(PLACEHOLDER)
    if count:  # the prompt's length follows from the lengths; then merging back must give the text
        length, rest = divmod(len(text) - (len(template) - count * len(PLACEHOLDER)), count)
        start = template.index(PLACEHOLDER)
        if length < 0 or rest or not text.startswith(template[:start]):
            return None
        prompt = text[start:start + length]
        return prompt if merge(template, prompt) == text else None
    style = template.strip()
    if not style:
        return text
    if text == style:
        return ""
    return text[:-len(style) - 2] if text.endswith(f", {style}") else None


def apply(styles: Sequence[Style], prompt: str, negative_prompt: str) -> tuple[str, str]:
    for style in styles:
        prompt, negative_prompt = merge(style.prompt, prompt), merge(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def extract(styles: Sequence[Style], prompt: str, negative_prompt: str) -> tuple[str, str] | None:
    """The prompts before `styles` were applied, or None when the text does not hold them as they read now."""
    for style in reversed(styles):
        before, negative_before = unmerge(style.prompt, prompt), unmerge(style.negative_prompt, negative_prompt)
        if before is None or negative_before is None:
            return None
        prompt, negative_prompt = before, negative_before
    return prompt, negative_prompt


def read_csv(data: bytes) -> list[Style]:
    """A1111's styles.csv: a header row naming at least `name`, then one style per row (empty names skipped, as
    A1111's own "None" row is). StyleError naming the row for anything it cannot take."""
    if len(data) > MAX_CSV_BYTES:
        raise StyleError(f"the styles file is {len(data):,} bytes; at most {MAX_CSV_BYTES:,}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StyleError("the styles file is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "name" not in [f.strip() for f in reader.fieldnames]:
        raise StyleError("the styles file has no `name` column (A1111's styles.csv starts with "
                         "name,prompt,negative_prompt)")
    styles: dict[str, Style] = {}
    try:
        for row in reader:
            row = {(k or "").strip(): v for k, v in row.items()}
            name = (row.get("name") or "").strip()
            if not name or name.lower() == "none":
                continue
            try:
                style = Style(name, row.get("prompt") or "", row.get("negative_prompt") or "").checked()
            except StyleError as e:
                raise StyleError(f"line {reader.line_num} of the styles file: {e}") from None
            styles[style.name] = style  # a later row of one name wins, as A1111 reads the file
            if len(styles) > MAX_STYLES:
                raise StyleError(f"the styles file holds more than {MAX_STYLES} styles")
    except csv.Error as e:
        raise StyleError(f"line {reader.line_num} of the styles file is not CSV: {e}") from None
    return list(styles.values())


def write_csv(styles: Sequence[Style]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["name", "prompt", "negative_prompt"])
    for style in styles:
        writer.writerow([style.name, style.prompt, style.negative_prompt])
    return out.getvalue().encode("utf-8")


class StyleStore:
    """Styles under `root/styles.db`, per owner. Safe to share between the threads of a process."""

    def __init__(self, root: Path) -> None:
        self._db = Database(Path(root) / DB_NAME, MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def all(self, owner: str) -> list[Style]:
        rows = self._read("SELECT name, prompt, negative_prompt FROM styles WHERE owner = ? "
                          "ORDER BY name COLLATE NOCASE, name", (owner,))
        return [Style(*row) for row in rows]

    def names(self, owner: str) -> list[str]:
        return [style.name for style in self.all(owner)]

    def chosen(self, owner: str, names: Sequence[str]) -> list[Style]:
        """`owner`'s styles of these names, in the order given; StyleError naming an unknown one and the closest."""
        if len(names) > MAX_APPLIED:
            raise StyleError(f"{len(names)} styles were chosen; at most {MAX_APPLIED} apply to one job")
        if not names:
            return []
        mine = {style.name: style for style in self.all(owner)}
        found = []
        for name in names:
            if not isinstance(name, str) or name not in mine:
                close = difflib.get_close_matches(str(name), list(mine), n=3, cutoff=0.5)
                hint = f"; closest: {', '.join(close)}" if close else ("" if mine else "; you have no styles yet")
                raise StyleError(f"unknown style {str(name)[:100]!r}{hint}")
            if mine[name] not in found:
                found.append(mine[name])
        return found

    def save(self, owner: str, style: Style) -> Style:
        """Store (or replace) one style; StyleError for a bad one or one style too many."""
        return self.save_all(owner, [style])[0]

    def save_all(self, owner: str, styles: Sequence[Style]) -> list[Style]:
        """Store (or replace by name) all of `styles` in one transaction: all or none."""
        checked = [style.checked() for style in styles]
        try:
            with self._db.transaction() as conn:
                for style in checked:
                    conn.execute(
                        "INSERT INTO styles (owner, name, prompt, negative_prompt, updated_at) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (owner, name) DO UPDATE SET prompt = excluded.prompt, "
                        "negative_prompt = excluded.negative_prompt, updated_at = excluded.updated_at",
                        (owner, style.name, style.prompt, style.negative_prompt, time.time()))
                count = conn.execute("SELECT COUNT(*) FROM styles WHERE owner = ?", (owner,)).fetchone()[0]
                if count > MAX_STYLES:
                    raise StyleError(f"that would make {count} styles, more than the {MAX_STYLES} one user may "
                                     "keep; delete some first")
        except sqlite3.Error as e:
            raise StyleSaveError(f"cannot save the styles: {e}") from e
        return checked

    def delete(self, owner: str, name: str) -> None:
        try:
            with self._db.transaction() as conn:
                deleted = conn.execute("DELETE FROM styles WHERE owner = ? AND name = ?", (owner, name)).rowcount
        except sqlite3.Error as e:
            raise StyleSaveError(f"cannot delete the style {name!r}: {e}") from e
        if not deleted:
            raise StyleError(f"no style named {name!r}")

    def _read(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        try:
            return self._db.query(sql, params)
        except sqlite3.Error as e:
            raise StyleSaveError(f"cannot read the styles: {e}") from e


def taken_out(store: StyleStore, owner: str, names: Sequence[str], prompt: str,
              negative_prompt: str) -> tuple[str, str, list[str], str | None]:
    """For "Reuse settings" and PNG Info: the prompts of a picture made with the styles `names`, with those styles
    taken back out and chosen again, when `owner` has styles of those names that still read as they did. Otherwise
    the prompts as they were expanded, no styles (choosing them would apply them twice), and a note saying why."""
    if not names:
        return prompt, negative_prompt, [], None
    listed = ", ".join(names)
    try:
        styles = store.chosen(owner, names)
    except StyleError:
        return (prompt, negative_prompt, [], f"It was made with the styles {listed}, which you do not all have: "
                "its prompts are kept as they were expanded.")
    original = extract(styles, prompt, negative_prompt)
    if original is None:
        return (prompt, negative_prompt, [], f"It was made with the styles {listed}; yours read differently now, so "
                "its prompts are kept as they were expanded.")
    return original[0], original[1], [s.name for s in styles], None
