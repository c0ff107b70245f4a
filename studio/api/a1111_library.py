"""AUTOMATIC1111's model lists (/sdapi/v1): checkpoints, VAEs, LoRAs, embeddings and upscalers of the model library,
in the shapes of A1111's `modules/api/models.py` (its Lora extension's `create_lora_json` for /loras), and the
refresh routes that rescan the folders.

Names follow A1111's: a checkpoint's title is its path under the checkpoints folder with the short hash in brackets,
a LoRA, an embedding or an upscaler goes by its file name without extension, a VAE by its file name. Files the
library cannot use (a `problem`: unreadable, truncated, a refused pickle) are left out, as A1111 lists only what it
could load.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time, and they name the
# caller dependency built inside `a1111_library_router`.

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from pipelines.models import ModelEntry, ModelFile, kinds
from pipelines.models.scan import PICKLES, SAFETENSORS
from studio.services import Services

KIND = "text_to_image"
# The width A1111 reports as an embedding's `shape`: its text encoder's. For SDXL A1111 shows the clip_l half (768),
# the one its embedding loader measures.
EMBEDDING_WIDTH = {kinds.SD1: 768, kinds.SD2: 1024, kinds.SDXL: 768}
UPSCALE = "upscale"  # the pipeline that runs upscalers
DEFAULT_SCALE = 4.0  # A1111's ESRGAN and Real-ESRGAN upscalers all report 4 unless the model says otherwise
SCALE_IN_NAME = re.compile(r"(?:^|[^a-z0-9])(?:x(\d)|(\d)x)(?:[^0-9]|$)", re.IGNORECASE)  # "4x_ultra", "…-x2v3"
MODEL_SUFFIXES = SAFETENSORS + PICKLES


class SDModelItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    title: str = Field(description="what `sd_model_checkpoint` takes: the name, with the short hash once known")
    model_name: str
    hash: str | None = Field(description="A1111's short hash (10 hex digits of the SHA-256); null until hashed")
    sha256: str | None
    filename: str = Field(description="the model's file or folder (a hub id for a model not downloaded)")
    config: str | None


class SDVaeItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    filename: str


class LoraItem(BaseModel):
    name: str = Field(description="what `<lora:NAME:weight>` takes: the file name without extension")
    alias: str = Field(description="the name it was trained under (`ss_output_name`), else `name`")
    path: str
    metadata: dict[str, Any] = Field(description="the file's safetensors metadata (kohya's `ss_*` fields)")


class EmbeddingItem(BaseModel):
    step: int | None
    sd_checkpoint: str | None
    sd_checkpoint_name: str | None
    shape: int = Field(description="the length of each vector (768 SD 1.x and SDXL's clip_l, 1024 SD 2.x; 0 when "
                                   "its base model is unknown)")
    vectors: int = Field(description="how many vectors (tokens) the embedding takes in a prompt")


class EmbeddingsResponse(BaseModel):
    loaded: dict[str, EmbeddingItem] = Field(description="embeddings that fit the caller's current checkpoint")
    skipped: dict[str, EmbeddingItem] = Field(description="embeddings made for another base model")


class UpscalerItem(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float | None


def a1111_library_router(services: Services, users: Callable[..., str],
                         model_in_use: Callable[[str], ModelEntry | None]) -> APIRouter:
    """The routes, without a prefix: the A1111 router includes them. `model_in_use(user)` is the caller's current
    checkpoint (its options' `sd_model_checkpoint`, else the default), or None."""
    router = APIRouter()
    User = Annotated[str, Depends(users)]  # noqa: N806 -- a type alias for the routes below

    @router.get("/sd-models", response_model=list[SDModelItem], summary="Text-to-image models")
    def sd_models(user: User) -> list[SDModelItem]:
        return [SDModelItem(title=checkpoint_title(m.id, m.hash), model_name=model_name(m.id), hash=m.hash,
                            sha256=m.sha256, filename=str(m.path or m.source), config=None)
                for m in services.catalog.models(KIND) if not m.refusal]

    @router.get("/sd-vae", response_model=list[SDVaeItem], summary="VAE files")
    def sd_vae(user: User) -> list[SDVaeItem]:
        return [SDVaeItem(model_name=f.path.name, filename=str(f.path)) for f in _usable(services, kinds.VAE)]

    @router.get("/loras", response_model=list[LoraItem], summary="LoRA files (LyCORIS included)")
    def loras(user: User) -> list[LoraItem]:
        return [LoraItem(name=f.name, alias=f.metadata.get("ss_output_name") or f.name, path=str(f.path),
                         metadata=a1111_metadata(f.metadata)) for f in _usable(services, kinds.LORA)]

    @router.get("/embeddings", response_model=EmbeddingsResponse, summary="Textual-inversion embeddings")
    def embeddings(user: User) -> EmbeddingsResponse:
        current = model_in_use(user)
        base = current.family if current is not None else ""
        loaded: dict[str, EmbeddingItem] = {}
        skipped: dict[str, EmbeddingItem] = {}
        for f in _usable(services, kinds.EMBEDDING):
            if f.name in loaded or f.name in skipped:
                continue  # one name, one embedding (a prompt cannot tell two apart): the first found wins
            item = EmbeddingItem(step=None, sd_checkpoint=None, sd_checkpoint_name=None,
                                 shape=EMBEDDING_WIDTH.get(f.family, 0), vectors=f.vectors)
            (loaded if kinds.fits(f.family, base) else skipped)[f.name] = item
        return EmbeddingsResponse(loaded=loaded, skipped=skipped)

    @router.get("/upscalers", response_model=list[UpscalerItem],
                summary="Upscalers: the resamplers, the bundled RealESRGAN networks, the library's ESRGAN files")
    def upscalers(user: User) -> list[UpscalerItem]:
        none = UpscalerItem(name="None", model_name=None, model_path=None, model_url=None, scale=DEFAULT_SCALE)
        architectures = {f.path: f.architecture for f in _usable(services, kinds.UPSCALER)}
        listed = [m for m in services.catalog.models(UPSCALE) if not m.refusal]
        return [none] + [UpscalerItem(name=m.path.stem if m.path else m.id,
                                      model_name=architectures.get(m.path) or m.description or None,
                                      model_path=str(m.path) if m.path else None, model_url=None,
                                      scale=upscale_factor(m.path.stem if m.path else m.id)) for m in listed]

    def refresh(user: User) -> None:
        services.catalog.refresh()

    for path, what in (("/refresh-checkpoints", "checkpoints"), ("/refresh-vae", "VAEs"), ("/refresh-loras", "LoRAs"),
                       ("/refresh-embeddings", "embeddings")):
        router.add_api_route(path, refresh, methods=["POST"], summary=f"Rescan the model folders (for new {what})",
                             operation_id=f"refresh_{what.lower()}")
    return router


def _usable(services: Services, kind: str) -> list[ModelFile]:
    return [f for f in services.catalog.files(kind) if not f.problem]


def checkpoint_title(model_id: str, model_hash: str | None) -> str:
    """A1111's checkpoint title: "name.safetensors [0123456789]", or the name alone before the hash is known."""
    return f"{model_id} [{model_hash}]" if model_hash else model_id


def model_name(model_id: str) -> str:
    """A1111's `model_name`: the path under the checkpoints folder with "/" as "_" and without the file extension."""
    name = model_id.replace("/", "_").replace("\\", "_")
    return next((name[: -len(s)] for s in MODEL_SUFFIXES if name.lower().endswith(s)), name)


def checkpoint_id(services: Services, name: str) -> str:
    """The catalogue id an A1111 client means: an id as it is, else a listed model's `model_name`, short hash or
    SHA-256 (A1111 accepts each in `sd_model_checkpoint`); `name` unchanged when none fits, for the catalogue to
    resolve or refuse."""
    listed = services.catalog.models(KIND)
    if any(m.id == name for m in listed):
        return name
    return next((m.id for m in listed if name in (model_name(m.id), m.hash, m.sha256)), name)


def a1111_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """Safetensors metadata as A1111 returns it: values that hold a JSON object (kohya's `ss_tag_frequency`,
    `ss_dataset_dirs`) parsed, the rest as text."""
    parsed: dict[str, Any] = {}
    for key, value in metadata.items():
        parsed[key] = value
        if value.startswith("{"):
            with contextlib.suppress(ValueError):  # not JSON after all: kept as text, as A1111 keeps it
                parsed[key] = json.loads(value)
    return parsed


def upscale_factor(name: str) -> float:
    """The factor an upscaler's file name states ("4x_ultra", "realesr-general-x4v3", "2x-anime"), else 4."""
    found = SCALE_IN_NAME.search(name)
    return float(found.group(1) or found.group(2)) if found else DEFAULT_SCALE
