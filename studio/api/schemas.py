"""Pydantic models of the native API: what clients send and get, and so what /openapi.json documents.

A job's params are not written out here: `job_request_model` derives one model per installed pipeline from
its Params (`describe()`: types, defaults, ranges, choices, labels), so the pipeline stays the one source of
truth and the schema follows when a pipeline gains a field. FastAPI checks types and ranges (422 naming the
field); the Params' own `check` then runs as for the UI.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from pipelines.base import BaseParams
from studio.generation import MAX_SEED

TYPES: dict[str, Any] = {"bool": bool, "int": int, "float": float, "str": str, "image": str, "mask": str}
MAX_TEXT = 100_000  # no prompt is this long; a bigger string is refused by the schema before it is parsed further


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def params_model(kind: str, params: type[BaseParams]) -> type[BaseModel]:
    """The pydantic twin of a pipeline's Params: same names, types, defaults, ranges and choices."""
    fields: dict[str, Any] = {}
    for spec in params.describe():
        annotation: Any = Literal[tuple(spec["choices"])] if spec["choices"] else TYPES.get(spec["type"], Any)
        about = ". ".join(part for part in (spec.get("label"), spec.get("help")) if part)
        if spec["type"] in ("image", "mask"):
            about += " (an input image: the `ref` that POST /api/v1/inputs returned, or empty)"
        limits: dict[str, Any] = {}
        if annotation in (int, float):
            limits = {k: spec[m] for k, m in (("ge", "minimum"), ("le", "maximum")) if spec.get(m) is not None}
        elif annotation is str:
            limits = {"max_length": MAX_TEXT}
        fields[spec["name"]] = (annotation, Field(spec["default"], description=about or None, **limits))
    return create_model(f"{_camel(kind)}Params", __base__=Strict, **fields)


def job_request_model(pipelines: dict[str, type[BaseParams]]) -> Any:
    """The body of POST /api/v1/jobs: one variant per pipeline, told apart by `pipeline`."""
    variants = []
    for kind, params in pipelines.items():
        model = params_model(kind, params)
        variants.append(create_model(
            f"{_camel(kind)}Job", __base__=Strict,
            pipeline=(Literal[kind], Field(description="which generator runs the job")),
            model=(str | None, Field(None, max_length=1000,
                                     description="a model id from GET /api/v1/models; empty: the tab's default")),
            params=(model, Field(default_factory=model, description="the pipeline's settings; omitted ones "
                                                                    "take their defaults")),
            seed=(int, Field(-1, ge=-1, le=MAX_SEED, description="-1 for a random seed, recorded with the job")),
            **({"styles": (list[str], Field(default_factory=list, max_length=20, description=(
                "the caller's prompt styles to apply, by name (GET /api/v1/styles): the job runs the expanded "
                "prompts and its recipe names the styles")))}
               if {"prompt", "negative_prompt"} <= set(model.model_fields) else {}),
        ))
    if len(variants) == 1:
        return variants[0]
    return Annotated[Union[tuple(variants)], Field(discriminator="pipeline")]  # noqa: UP007 -- built at run time


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


class JobOut(BaseModel):
    id: str
    pipeline: str
    model: str
    seed: int
    params: dict[str, Any]
    status: Literal["pending", "running", "completed", "failed", "canceled"]
    progress: float = Field(description="0 to 1")
    step: int
    total_steps: int
    queue_position: int | None = Field(None, description="jobs ahead of this one while it is pending")
    error: str | None = None
    image_ids: list[str] = Field(description="the artworks it made, once completed")
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class JobList(BaseModel):
    jobs: list[JobOut]


class JobAccepted(BaseModel):
    id: str
    status: str
    seed: int
    queue_position: int
    links: dict[str, str]


class ImageOut(BaseModel):
    id: str
    owner: str = Field(description="who made it (others' appear only in a studio with --shared-gallery)")
    job_id: str
    pipeline: str
    model: str
    seed: int
    prompt: str
    width: int
    height: int
    favorite: bool
    created_at: float
    url: str = Field(description="the PNG, with its recipe inside")
    thumbnail_url: str
    animation: dict[str, str] = Field(default_factory=dict, description="an animation's files by format (gif, mp4)")


class ImagePage(BaseModel):
    images: list[ImageOut]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")


class RecordOut(ImageOut):
    recipe: dict[str, Any] = Field(description="everything needed to make the image again")
    parameters: str = Field(description="the A1111-style parameters text stored in the PNG")


class RecordPatch(Strict):
    favorite: bool


class InputOut(BaseModel):
    ref: str = Field(description="use as the value of an image field in a job's params")
    width: int
    height: int


class ModelOut(BaseModel):
    id: str
    kind: str
    origin: str
    status: str
    licence: str
    restriction: str = Field(description="a limit on use (e.g. non-commercial); empty when none")
    size_bytes: int | None
    description: str
    default: bool = Field(description="what its pipeline uses when a job names no model")
    loaded: bool = Field(description="a worker holds it in memory now: a job on it starts without loading")


class LibraryFileOut(BaseModel):
    id: str = Field(description="unique among files of its kind: the path under its kind's folder, or "
                                "\"layout:path\" when two model folders hold the same path")
    kind: str = Field(description="checkpoint, vae, lora, embedding, controlnet, upscaler, gan, style, or other "
                                  "(a file Atelier cannot place)")
    name: str = Field(description="A1111's name: the file name without extension (a folder's name)")
    rel: str = Field(description="ComfyUI's name: the path under its kind's folder, with the extension")
    family: str = Field(description="the base model it was made for (sd1, sd2, sdxl); empty when unknown")
    size_bytes: int
    sha256: str | None = Field(description="null until the background hasher has read it")
    short_hash: str | None = Field(description="A1111's short hash: the first 10 hex digits of the SHA-256")
    about: str = Field(description="what it is, from its sidecars, metadata or layout")
    triggers: list[str] = Field(description="trigger words its sidecars or training metadata suggest")
    has_preview: bool
    preview_url: str | None = Field(description="the picture beside the file; null when it has none")
    note: str = Field(description="something worth knowing (e.g. a LoRA found in the checkpoints folder)")
    problem: str = Field(description="why it cannot be used; empty when it can")
    layout: str = Field(description="the folder layout it was found in: atelier, a1111 or comfyui")
    origin: str = Field(description="local (the --models-dir folders) or bundled")


class LibraryRefreshOut(BaseModel):
    files: dict[str, int] = Field(description="files found, per kind (those with a problem included)")
    problems: int = Field(description="files that cannot be used (see `problem` in GET /api/v1/library)")
    models: int = Field(description="models the pipelines can load now, in GET /api/v1/models")
    hashing: int = Field(description="files still waiting for their hash")


class MemoryOut(BaseModel):
    ram: int = Field(description="bytes of main memory the loaded models hold")
    vram: int = Field(description="bytes of GPU memory they hold")
    ram_budget: int = Field(description="the worker's main-memory budget for models, in bytes (--model-memory-gb)")
    vram_budget: int = Field(description="its GPU-memory budget in bytes (--gpu-memory-gb); 0 on a CPU worker")


class WorkerOut(BaseModel):
    name: str
    device: str = Field(description="cpu, cuda:0…; on the Ray backend also the machine Ray placed it on "
                                    "('cuda:0 on 10.0.0.7'), once it has started")
    alive: bool
    current_jobs: list[str] = Field(description="the caller's job it runs, or the caller's jobs of the batch it "
                                                "runs; empty when idle or busy with other users' work")
    other_jobs: int = Field(description="how many other users' jobs it runs (their ids are theirs to know)")
    restarts: int
    loaded: list[str] = Field(description="model ids in this worker's memory, most recently used last")
    memory: MemoryOut | None = Field(description="what those models hold against the worker's budgets; null until "
                                                 "its first job ends")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    pipelines: list[str]
    pending_jobs: int
    backend: Literal["local", "ray"] = Field(description="where the model workers run: processes of the studio's "
                                                         "machine, or actors on a Ray cluster")
    workers: list[WorkerOut]


class StyleIn(Strict):
    prompt: str = Field("", max_length=5_000, description="the style's prompt; `{prompt}` stands for the user's")
    negative_prompt: str = Field("", max_length=5_000)


class StyleOut(BaseModel):
    name: str
    prompt: str
    negative_prompt: str


class StylesImported(BaseModel):
    imported: int = Field(description="styles added or replaced (by name)")
    styles: int = Field(description="the caller's styles now")
