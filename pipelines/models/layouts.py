"""Which folders of a models root hold which kind of model, for the three layouts artists arrive with.

- Atelier's own: one folder of anything, each file's kind read from its contents.
- AUTOMATIC1111 / Forge: `models/Stable-diffusion`, `models/Lora`, `models/LyCORIS`, `models/VAE`,
  `models/ControlNet`, `models/ESRGAN`, `models/RealESRGAN`, with `embeddings/` beside `models/`. The root may be
  the webui folder or its `models/`.
- ComfyUI: `models/checkpoints`, `loras`, `vae`, `embeddings`, `controlnet`, `upscale_models` (and `diffusers`);
  the root may be the ComfyUI folder, its `models/`, or an `extra_model_paths.yaml`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipelines.models.kinds as kinds

A1111_FOLDERS = {"Stable-diffusion": kinds.CHECKPOINT, "Lora": kinds.LORA, "LyCORIS": kinds.LORA,
                 "VAE": kinds.VAE, "ControlNet": kinds.CONTROLNET, "ESRGAN": kinds.UPSCALER,
                 "RealESRGAN": kinds.UPSCALER}
COMFYUI_FOLDERS = {"checkpoints": kinds.CHECKPOINT, "diffusers": kinds.CHECKPOINT, "loras": kinds.LORA,
                   "vae": kinds.VAE, "embeddings": kinds.EMBEDDING, "controlnet": kinds.CONTROLNET,
                   "upscale_models": kinds.UPSCALER}
MAX_YAML_BYTES = 256 * 1024


@dataclass(frozen=True)
class Place:
    folder: Path
    kind: str | None  # what the layout says this folder holds; None: read each file's kind from the file


@dataclass(frozen=True)
class Root:
    path: Path  # as the user gave it
    layout: str  # "atelier" | "a1111" | "comfyui"
    places: tuple[Place, ...]
    problem: str = ""  # why nothing could be read from it (a missing folder, a broken YAML file)


def read_root(path: Path) -> list[Root]:
    """The roots `path` stands for: one folder, or each section of an extra_model_paths.yaml."""
    path = Path(path).expanduser()
    if path.suffix.lower() in (".yaml", ".yml"):
        return _extra_model_paths(path)
    if not path.is_dir():
        return [Root(path, "atelier", (), f"{path} is not a folder")]
    for models in (path, path / "models"):
        if (models / "Stable-diffusion").is_dir() or (models / "Lora").is_dir():
            places = [Place(models / name, kind) for name, kind in A1111_FOLDERS.items()]
            # the webui's `embeddings/` lies beside `models/`; some installs keep a `models/embeddings` too
            embeddings = [Place(folder / "embeddings", kinds.EMBEDDING) for folder in (models.parent, models)]
            return [Root(path, "a1111", (*places, *embeddings))]
        if (models / "checkpoints").is_dir() or (models / "loras").is_dir():
            return [Root(path, "comfyui", tuple(Place(models / name, kind) for name, kind in COMFYUI_FOLDERS.items()))]
    return [Root(path, "atelier", (Place(path, None),))]


def _extra_model_paths(path: Path) -> list[Root]:
    """ComfyUI's extra_model_paths.yaml: sections of `base_path` and folder-type → one or several paths (a block of
    lines), each relative to `base_path`, itself relative to the YAML file's folder."""
    import yaml

    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            return [Root(path, "comfyui", (), f"{path.name} is over {MAX_YAML_BYTES // 1024} KB")]
        sections = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return [Root(path, "comfyui", (), f"cannot read {path.name}: {type(e).__name__}: {e}"[:300])]
    if not isinstance(sections, dict):
        return [Root(path, "comfyui", (), f"{path.name} holds no sections of model paths")]
    roots = []
    for name, section in sections.items():
        if not isinstance(section, dict):
            continue
        base = path.parent / str(section.get("base_path", "") or "")
        places = [Place(_under(base, line), COMFYUI_FOLDERS[kind])
                  for kind, value in section.items() if kind in COMFYUI_FOLDERS
                  for line in _lines(value)]
        roots.append(Root(base, "comfyui", tuple(places), "" if places else f"section {name!r} names no model folder"))
    return roots


def _lines(value: Any) -> list[str]:
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def _under(base: Path, line: str) -> Path:
    return Path(line).expanduser() if Path(line).expanduser().is_absolute() else base / line
