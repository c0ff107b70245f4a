"""The benchmark suite's own machinery (not the measurements): sections' rows become one table and a chart, a
broken section is reported without losing the others, and a full run rewrites only the README's table."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from benchmarks import suite
from benchmarks.common import Row

ROWS = [Row("fast thing", "slow thing", "1 s vs 3 s", "≥ 2×", True, 3.0, "why it is fast"),
        Row("slow thing", "fast thing", "3 s vs 1 s", "≥ 1×", False, 1 / 3),
        Row("gallery page", "—", "12 ms", "≤ 30 ms", True)]


@pytest.fixture
def sections(monkeypatch: pytest.MonkeyPatch) -> None:
    good = types.ModuleType("benchmarks.good")
    good.rows = lambda quick: ROWS  # type: ignore[attr-defined]
    broken = types.ModuleType("benchmarks.broken")

    def fail(quick: bool) -> list[Row]:
        raise RuntimeError("no such model")
    broken.rows = fail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.good", good)
    monkeypatch.setitem(sys.modules, "benchmarks.broken", broken)


def test_rows_make_a_table_and_a_chart(sections, tmp_path: Path) -> None:
    rows, seconds = suite.run_sections(["good", "broken"], quick=True)
    assert rows[:3] == ROWS and set(seconds) == {"good", "broken"}
    assert rows[3].met is False and "RuntimeError: no such model" in rows[3].result  # the others are kept
    lines = suite.table(rows)
    assert lines[2] == "| fast thing | slow thing | 1 s vs 3 s | 3.00× | ≥ 2× | ✅ met |"
    assert "| gallery page | — | 12 ms | — | ≤ 30 ms | ✅ met |" in lines
    assert "- **fast thing**: why it is fast" in lines
    suite.chart(rows, tmp_path / "chart.png")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.height > 100 and chart.getcolors(1 << 20)  # drawn, with more than one colour


def test_a_full_run_replaces_only_the_readme_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Atelier\n\nintro\n\n{suite.BEGIN}\nold table\n{suite.END}\n\n## Developing\n")
    monkeypatch.setattr(suite, "README", readme)
    suite.update_readme("| new | table |")
    expected = f"# Atelier\n\nintro\n\n{suite.BEGIN}\n| new | table |\n{suite.END}\n\n## Developing\n"
    assert readme.read_text() == expected


def test_the_real_readme_has_the_markers() -> None:
    text = suite.README.read_text(encoding="utf-8")
    assert text.count(suite.BEGIN) == text.count(suite.END) == 1
    assert text.index(suite.BEGIN) < text.index(suite.END)
