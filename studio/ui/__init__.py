"""The Gradio shell: one Blocks app with a tab per generator, the gallery and the models."""

from __future__ import annotations

from studio.ui.app import build_app

__all__ = ["build_app"]
