"""The contract every generator follows: typed params with validation, `load`, and one `__call__`.

A pipeline is pure ML. It never imports `studio` or `gradio`; the studio calls it from a worker process
with a progress callback and a stop poll (see ARCHITECTURE.md, "The pipeline contract").
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, get_args, get_origin

from pipelines.models.entries import ModelEntry
from pipelines.models.hub import ModelError, hub_entry
from pipelines.models.library import Library

if typing.TYPE_CHECKING:
    import torch
    from PIL import Image

# Shared knob names → the labels A1111 writes them under in its `parameters` text (PNG Info reads them back)
A1111_LABELS = {"num_steps": "Steps", "sampler": "Sampler", "cfg_scale": "CFG scale", "clip_skip": "Clip skip"}

OnStep = Callable[[int, int, "Image.Image | None"], None]
ShouldStop = Callable[[], bool]
OnStatus = Callable[[str], None]  # a line for the user while loading (e.g. download progress)
# Input images of a job (init image, mask, style image…) by the reference its params hold. The studio resolves
# references before the call, so a pipeline never reads the studio's disk.
ImageInputs = Mapping[str, "Image.Image"]


class PipelineError(ModelError):
    """A pipeline failed for a reason the user can act on; the message is shown as is."""


class Interrupted(PipelineError):
    """The user stopped the job between two steps."""


def param(default: Any, *, label: str = "", help: str = "", minimum: float | None = None,
          maximum: float | None = None, step: float | None = None, multiline: bool = False,
          kind: str = "", paint_on: str = "", thumbnails: str = "", modes: tuple[str, ...] = (),
          random: bool = False) -> Any:
    """A Params field with the hints a UI needs (label, range, step); validation still happens in `check`.

    `kind="image"` marks a str field holding a reference to an input image (see `ImageInputs`);
    `kind="mask"` one holding a mask painted over the image field named by `paint_on`.
    `thumbnails` names a folder of the repository (e.g. "assets/styles") whose images, in name order, picture
    the values minimum, minimum + 1, …: the UI shows them as a picker for this number.
    `modes` lists the values of the Params' `mode` field in which this field matters; the UI hides it in others.
    `random` marks a seed-like int whose -1 means "draw one": the studio draws it at submit (`BaseParams.drawn`), so
    the recipe holds the value used.
    """
    hints = {"label": label, "help": help, "minimum": minimum, "maximum": maximum, "step": step,
             "multiline": multiline, "kind": kind, "paint_on": paint_on, "thumbnails": thumbnails,
             "modes": modes or None, "random": random}
    # identity, not equality: a minimum of 0 or 0.0 is a real bound (0 == False would drop it)
    return field(default=default, metadata={k: v for k, v in hints.items() if v is not None and v is not False
                                            and v != ""})


class Workload(NamedTuple):
    """How much one job asks for, as a studio's per-job caps count it."""

    pictures: int  # pictures made; each frame of an animation and each tile of a grid counts
    pixels: int  # pixels of each picture as asked for (after any upscale); 0 when the size is the model's
    # native one or follows an input picture, which the caller does not choose freely


@dataclass(frozen=True)
class BaseParams:
    """Frozen params of one job. Subclasses add fields (use `param(...)`) and extend `check`.

    `from_dict` is the edge where JSON from a browser or an API client becomes typed values: unknown keys,
    wrong types and out-of-range numbers raise ValueError naming the field. Nothing is clamped silently.
    """

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> typing.Self:
        if not isinstance(values, Mapping):
            raise ValueError(f"params must be an object of name → value, got {type(values).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown parameter `{unknown[0]}`; expected some of: {', '.join(sorted(known))}")
        coerced = {name: _coerce(name, hints[name], value) for name, value in values.items()}
        params = cls(**coerced)
        params.check()
        return params

    @classmethod
    def check_fields(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` checked field by field as `from_dict` checks them (type, choices, declared range), without the
        rules that tie fields together (a photo is required, interpolation needs two seeds): what a preset or a
        model's defaults must pass, since they leave the photo and the seeds out. ValueError names the first bad
        field; numbers come back as their field's type."""
        hints = typing.get_type_hints(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        checked: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown setting `{name}`")
            checked[name] = _coerce(name, hints[name], value)
            _check_range(known[name], checked[name])
        return checked

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_files(self) -> list[tuple[str, str]]:
        """Files of the model library this job names besides its model, as (kind, name): e.g. the LoRAs of a
        prompt's tags. The studio resolves them at submit (an unknown one is refused there) and the worker gets
        their paths (`files` of `__call__`)."""
        return []

    def prompt_texts(self) -> list[str]:
        """The texts a text encoder reads (a prompt, a negative prompt): where embeddings are named."""
        return []

    def drawn(self, draw: Callable[[], int]) -> typing.Self:
        """These params with each `random` field left at -1 given a value of `draw()`."""
        changes = {f.name: draw() for f in dataclasses.fields(self)
                   if f.metadata.get("random") and getattr(self, f.name) == -1}
        return dataclasses.replace(self, **changes) if changes else self

    def check(self) -> None:
        """Raise ValueError naming the first bad field. The base checks declared ranges."""
        for f in dataclasses.fields(self):
            _check_range(f, getattr(self, f.name))

    def workload(self) -> Workload:
        """What this job asks for; pipelines that make more than one picture, or take a size, override it."""
        return Workload(1, 0)

    def workload_for(self, sizes: Mapping[str, tuple[int, int]]) -> Workload:
        """What this job asks for, knowing the sizes of its input pictures (reference → (width, height)): for a
        pipeline whose result's size follows an input picture. ValueError names a size it cannot make."""
        return self.workload()

    def batch_key(self) -> str | None:
        """Jobs of one model whose params give the same key may run together as one batch (`Pipeline.run_batch`);
        None: this job runs alone. Pipelines that gain from batching override it."""
        return None

    def a1111_fields(self) -> dict[str, Any]:
        """Key/value pairs for the A1111 `parameters` text beyond prompt and seed; subclasses may extend.

        Shared knob names map to A1111's labels; every other field follows under its own name, except fields
        that do not matter in this job's mode (the `modes` hint).
        """
        values = self.to_dict()
        mode = values.get("mode")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            modes = f.metadata.get("modes")
            if f.name in ("prompt", "negative_prompt", "width", "height") or (modes and mode not in modes):
                continue
            out[A1111_LABELS.get(f.name, f.name)] = values[f.name]
        if "width" in values and "height" in values:
            out["Size"] = f"{values['width']}x{values['height']}"
        return out

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Each field's name, type, default and UI hints, for building forms and API docs."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            kind, choices = _kind_of(hints[f.name])
            meta = dict(f.metadata)
            kind = meta.pop("kind", kind)
            out.append({"name": f.name, "type": kind, "choices": choices, "default": f.default, **meta})
        return out

    @classmethod
    def image_fields(cls) -> list[str]:
        """Fields that hold input-image references (kind "image" or "mask")."""
        return [f.name for f in dataclasses.fields(cls) if f.metadata.get("kind") in ("image", "mask")]

    def image_refs(self) -> list[str]:
        return [ref for name in self.image_fields() if (ref := getattr(self, name))]


def _check_range(f: dataclasses.Field[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
    if low is not None and value < low:
        raise ValueError(f"`{f.name}` must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"`{f.name}` must be at most {high}, got {value}")


def _kind_of(tp: Any) -> tuple[str, list[Any] | None]:
    if get_origin(tp) is Literal:
        return "choice", list(get_args(tp))
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(tp, "json"), None


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Accept what JSON and HTML forms send (e.g. 7.0 for an int, "3" for a number) but nothing lossy."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ValueError(f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(name, args[0], value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"`{name}` must be true or false, got {value!r}")
    if tp in (int, float):
        return _coerce_number(name, tp, value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"`{name}` must be text, got {type(value).__name__}")
        return value
    return value


def _coerce_number(name: str, tp: type, value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"`{name}` must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"`{name}` must be a finite number, got {value}")
    if tp is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"`{name}` must be a whole number, got {value}")
            value = int(value)
        return value  # its range is checked with the others
    try:
        return float(value)
    except OverflowError:  # an integer past float's range (over 308 digits)
        raise ValueError(f"`{name}` is far too large ({len(str(abs(value)))} digits)") from None


@dataclass
class Animation:
    """Frames of one animation, played at `fps`; with `loop` it plays on repeat, without it once."""

    frames: list[Image.Image]
    fps: float
    loop: bool = True

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("an animation needs at least one frame")
        if len({frame.size for frame in self.frames}) > 1:
            raise ValueError("every frame of an animation must have the same size")


@dataclass
class ImageResult:
    """What a pipeline hands back: images plus what is needed to reproduce each one.

    `seeds[i]` is the seed that reproduces `images[i]` on its own; `info` holds extra recipe facts
    (e.g. a warning the user should see, or the scheduler actually used). `animations[i]`, when present, is
    the animation `images[i]` stands for (the image is then its frame sheet); the studio stores it as GIF/MP4.
    """

    images: list[Image.Image]
    seeds: list[int]
    info: dict[str, Any] = field(default_factory=dict)
    animations: dict[int, Animation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.seeds):
            raise ValueError(f"ImageResult has {len(self.images)} images but {len(self.seeds)} seeds")
        if any(not 0 <= i < len(self.images) for i in self.animations):
            raise ValueError(f"ImageResult animations refer to images {sorted(self.animations)} of "
                             f"{len(self.images)}")


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch: its params, seed, progress callback and input images."""

    params: Any  # the pipeline's Params
    seed: int
    on_step: OnStep | None = None
    inputs: ImageInputs = field(default_factory=dict)


class Pipeline(ABC):
    """One generator. `load` builds it once per model (the worker caches it); `__call__` runs one job."""

    kind: ClassVar[str]
    Params: ClassVar[type[BaseParams]]

    # The kind of model file it loads (pipelines.models.kinds), for its models that no library file stands behind
    # (a hub id, a package's weights); "" when none applies
    model_kind: ClassVar[str] = ""
    # Kinds of library file its prompts name by tag (`<lora:NAME:W>`): the tab offers a picker of them
    prompt_networks: ClassVar[tuple[str, ...]] = ()
    # Whether it loads any Hugging Face hub id a request names (not only the listed models), fetched on first use
    hub_ids: ClassVar[bool] = False
    # Whether its pictures depend on the job's seed (its tab shows one); an upscaler's do not
    seeded: ClassVar[bool] = True

    @classmethod
    def folder_classes(cls) -> dict[str, str]:
        """The `_class_name`s of model folders (config.json) this pipeline brings, → their kind of model file
        (pipelines.models.kinds), so the library lists them under that kind."""
        return {}

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        """The catalogue entries this pipeline brings: what it loads from the library (bundled models and the
        user's folders) and weights inside installed packages."""
        return []

    @classmethod
    def hub_model(cls, repo_id: str) -> ModelEntry:
        """The entry for a hub id a request names (only asked when `hub_ids`)."""
        return hub_entry(repo_id, kind=cls.kind)

    @classmethod
    @abstractmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> typing.Self:
        """Load a model. `options` come from the model's catalogue entry (e.g. allow_pickle)."""

    @abstractmethod
    def __call__(self, params: BaseParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None) -> ImageResult:
        """Run one job. A pipeline whose params name `model_files` also takes `files`: name → path."""

    def run_batch(self, jobs: Sequence[BatchItem], *, should_stop: ShouldStop | None = None) -> list[ImageResult]:
        """Several jobs whose params share a `batch_key`, one result each, in order. Each job's pictures are those
        it would get alone (to within rounding). Stop ends them all. This default runs them one after another;
        a pipeline that can do better (one batched forward pass) overrides it."""
        return [self(job.params, seed=job.seed, on_step=job.on_step, should_stop=should_stop, inputs=job.inputs)
                for job in jobs]

    def nbytes(self) -> int:
        """Memory the loaded model holds, in bytes: the sum over its torch modules and tensors."""
        return sum(self.memory().values())

    def memory(self) -> dict[str, int]:
        """Bytes the loaded model holds by where they live, for the worker's cache budgets: "ram" (on the CPU,
        including parts offloaded there between uses) and "vram" (on a GPU). Each tensor counts once."""
        held = {"ram": 0, "vram": 0}
        seen: set[int] = set()
        for t in self.tensors():
            if id(t) in seen or t.device.type == "meta":
                continue
            seen.add(id(t))
            held["ram" if t.device.type == "cpu" else "vram"] += t.numel() * t.element_size()
        return held

    def tensors(self) -> Iterator[torch.Tensor]:
        """The weights and buffers the loaded model holds: by default those of its attributes that are torch
        modules or tensors; a pipeline keeping them elsewhere (in a diffusers pipeline, a dict) says so."""
        import torch

        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                yield from value.parameters()
                yield from value.buffers()
            elif isinstance(value, torch.Tensor):
                yield value
