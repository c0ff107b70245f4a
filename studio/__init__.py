"""Atelier: the studio around the pipelines (queue, workers, gallery, UI, API)."""

from __future__ import annotations

__version__ = "0.1.0"
