"""What every training script of the bundled models shares: the dataset, seeding, a progress bar, resumable
checkpoints and sample grids.

A run writes to a work folder (`--work`, default `<user cache>/atelier/training/<model>`): `checkpoint.pt` (model,
optimiser, step, the random generator), `samples/step_<n>.png` and `log.jsonl` (one line of losses per log
interval). Starting again with the same work folder resumes where the last run stopped; the final weights go
to `--out` as a diffusers folder (config.json + fp16 safetensors) with the training facts in `training.json`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
import torch

from pipelines.train.dataset import default_dir


@dataclass(frozen=True)
class Dataset:
    images: torch.Tensor  # (N, 3, 64, 64) float32 in [−1, 1]
    captions: list[str]
    train: list[int]
    validation: list[int]


def load_dataset(folder: Path, limit: int | None = None) -> Dataset:
    """The cache written by `python -m pipelines.train.dataset`; `limit` keeps the first images of each split."""
    if not (folder / "images.npy").is_file():
        sys.exit(f"no dataset in {folder}: build it with `python -m pipelines.train.dataset --out {folder}`")
    pixels = torch.from_numpy(np.load(folder / "images.npy")).permute(0, 3, 1, 2).float() / 127.5 - 1
    captions = [c["caption"] for c in json.loads((folder / "captions.json").read_text(encoding="utf-8"))]
    split = json.loads((folder / "split.json").read_text(encoding="utf-8"))
    train, validation = split["train"], split["validation"]
    if limit is not None:
        train, validation = train[:limit], validation[:max(1, limit // 8)]
    return Dataset(pixels.contiguous(), captions, train, validation)


def base_arguments(model: str, description: str | None, batch: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where the trained model folder goes")
    parser.add_argument("--data", type=Path, default=default_dir(), help="the dataset cache")
    parser.add_argument("--work", type=Path, default=Path(platformdirs.user_cache_dir("atelier", appauthor=False))
                        / "training" / model, help="checkpoints, samples and the log (resumed from if present)")
    parser.add_argument("--minutes", type=float, default=90.0, help="stop after this much training time")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps in all")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images (tests)")
    parser.add_argument("--batch", type=int, default=batch, help=f"images per step (default {batch})")
    parser.add_argument("--seed", type=int, default=0)
    return parser


class Progress:
    """A one-line progress bar on stderr with the step, rate and latest losses (for humans watching a run)."""

    def __init__(self, total_steps: int | None, minutes: float, first_step: int = 0) -> None:
        self.total, self.minutes, self.start = total_steps, minutes, time.monotonic()
        self.first_step = first_step  # a resumed run counts its speed from where it started

    def update(self, step: int, batch: int, losses: dict[str, float]) -> None:
        elapsed = time.monotonic() - self.start
        images = (step - self.first_step) * batch
        done = min(1.0, elapsed / (self.minutes * 60)) if self.total is None else min(1.0, step / self.total)
        bar = "#" * int(done * 30)
        loss_text = " ".join(f"{k} {v:.4g}" for k, v in losses.items())
        sys.stderr.write(f"\r[{bar:<30}] step {step} · {images / max(elapsed, 1e-9):.0f} img/s · {loss_text}   ")
        sys.stderr.flush()

    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.start) / 60


class Checkpoints:
    """A run's resumable state in `<work>/checkpoint.pt`: named parts (modules and optimisers, anything with
    `state_dict`), the random generator, the step, the minutes trained and `extras` (plain numbers and strings a
    run keeps about itself). Saves are atomic."""

    def __init__(self, work: Path, parts: dict[str, Any], rng: torch.Generator) -> None:
        self.path, self.parts, self.rng = work / "checkpoint.pt", parts, rng
        self.extras: dict[str, Any] = {}
        self.last_save = time.monotonic()

    def resume(self) -> tuple[int, float]:
        """Load the last checkpoint into the parts, if there is one: (step, minutes trained so far)."""
        if not self.path.is_file():
            return 0, 0.0
        # our own file: module and optimiser states hold plain containers and tensors only
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        self.rng.set_state(state["rng"])
        self.extras = dict(state.get("extras", {}))
        print(f"resuming at step {state['step']} ({state['minutes']:.1f} min trained)")  # noqa: T201
        return state["step"], state["minutes"]

    def save(self, step: int, minutes: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {name: part.state_dict() for name, part in self.parts.items()}
        temp = self.path.with_suffix(".tmp")
        torch.save({**state, "rng": self.rng.get_state(), "step": step, "minutes": minutes,
                    "extras": self.extras}, temp)
        temp.replace(self.path)  # a crash mid-save keeps the previous checkpoint
        self.last_save = time.monotonic()

    def save_now_and_then(self, step: int, minutes: float, every_s: float = 120.0) -> None:
        if time.monotonic() - self.last_save > every_s:
            self.save(step, minutes)


def log_line(work: Path, values: dict[str, Any]) -> None:
    with (work / "log.jsonl").open("a", encoding="utf-8") as log:
        log.write(json.dumps(values) + "\n")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two batches in [−1, 1], over 8-bit values."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) * 127.5).pow(2).mean().item()
    return 100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def save_grid(path: Path, images: torch.Tensor, columns: int = 8) -> None:
    """A batch in [−1, 1] as one PNG grid, for looking at a run's progress."""
    from pipelines.imaging import contact_sheet, to_image

    path.parent.mkdir(parents=True, exist_ok=True)
    contact_sheet([to_image((x + 1) / 2) for x in images], columns=columns).save(path)


def save_model(model: Any, out: Path, facts: dict[str, Any]) -> None:
    """The trained diffusers model as an fp16 folder (half the bytes; every loader upcasts as it needs)."""
    out.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).half().save_pretrained(out)
    (out / "training.json").write_text(json.dumps(facts, indent=2), encoding="utf-8")


@dataclass(frozen=True)
class ModelCard:
    """What MODEL_CARD.md says about a trained model; the front matter is what the Models tab shows."""

    title: str
    description: str  # one line, for the Models tab
    architecture: str
    command: str
    limits: str
    images: tuple[tuple[str, str], ...]  # (file in the model folder, caption)
    licence: str = "Apache-2.0 (weights, as Atelier); training data: OFL-1.1 emoji font, public-domain clip art"


def write_model_card(out: Path, card: ModelCard, model: Any, facts: dict[str, Any], data: Path) -> None:
    parameters = sum(p.numel() for p in model.parameters())
    stats = json.loads((data / "stats.json").read_text(encoding="utf-8")) if (data / "stats.json").is_file() else {}
    sources = ", ".join(f"{count:,} {source}" for source, count in stats.get("by_source", {}).items())
    lines = ["---", f"licence: {card.licence}", f"description: {card.description}", "---", "",
             f"# {card.title}", "", card.description, "", "## Architecture", "", card.architecture, "",
             f"{parameters / 1e6:.2f} M parameters, stored in fp16.", "", "## Data", "",
             f"The emoji + clip-art set of `pipelines/train/dataset.py`: {stats.get('images', 0):,} images "
             f"({sources}), 64×64 on white; {stats.get('train', 0):,} for training and "
             f"{stats.get('validation', 0):,} held out for validation. Licences: "
             + "; ".join(f"{k}: {v}" for k, v in stats.get("licences", {}).items()) + ".", "",
             "## Training", "", f"`{card.command}` (resumable; fixed seeds).", "",
             "| fact | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts.items()), "",
             *(line for file, caption in card.images for line in (f"![{caption}]({file})", "", f"*{caption}*", "")),
             "## Known limits", "", card.limits, ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines), encoding="utf-8")
