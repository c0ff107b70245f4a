"""GenerationService: the one way a request becomes a job and a finished job becomes artworks.

The UI and the REST API both call `submit`: it checks the pipeline, the model and the params at the edge
(nothing invalid is enqueued), resolves a random seed, and enqueues. The dispatchers call `prepare` (job →
work order for a worker) and `deliver` (images → gallery, with the full recipe in each PNG).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipelines.base import BaseParams, Workload
from pipelines.catalog import Catalog, pipeline_path
from pipelines.models import ModelEntry, ModelFile, kinds
from pipelines.models.hub import OFFLINE_STATUS, offline_reason
from pipelines.prompts.networks import network_tags
from pipelines.prompts.wildcards import WILDCARDS, read_lines, wildcard_files, wildcard_folders
from studio import __version__
from studio.config import JobCaps
from studio.gallery import GalleryStore, Recipe
from studio.gallery.inputs import InputStore
from studio.jobs import Job, JobError, JobEvent, JobEvents, JobQueue, JobSpec
from studio.styles import StyleStore, apply
from studio.workers.protocol import DeliveryFailed, Finished, WorkOrder

logger = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1  # what torch.Generator.manual_seed and A1111 clients accept
WORD = re.compile(r"[\w\-]+(?:\.[\w\-]+)*")  # a word of a prompt, as an embedding's name must stand in it
MAX_PARAMS_CHARS = 100_000  # a recipe is a few hundred bytes; anything near this is an abuse, not a prompt
DRAWN = {"prompt": "prompts", "negative_prompt": "negative_prompts"}  # param → the result info's per-picture list


class ModelUnavailable(JobError):
    """The model exists but cannot be loaded now (a hub model not downloaded, with the studio offline)."""


class GenerationService:
    def __init__(self, queue: JobQueue, catalog: Catalog, gallery: GalleryStore, inputs: InputStore,
                 events: JobEvents, caps: JobCaps | None = None, styles: StyleStore | None = None) -> None:
        self.queue = queue
        self.styles = styles
        self.caps = caps or JobCaps()
        self.catalog = catalog
        self.gallery = gallery
        self.inputs = inputs
        self.events = events

    # -- the edge ---------------------------------------------------------------------------------------
    def build_spec(self, pipeline: str, model: str, params: Mapping[str, Any], seed: int | None = -1, *,
                   owner: str = "local", priority: int = 0, styles: Sequence[str] = ()) -> JobSpec:
        """Validate a request; raise ValueError (naming the field) or UnknownPipeline/UnknownModel. `styles` name
        `owner`'s prompt styles, applied to the prompts here: the job runs the expanded prompts."""
        cls = self.catalog.pipeline(pipeline)
        entry = self.catalog.model(model, pipeline, any_hub_id=self.caps.any_hub_model)
        if entry.status == OFFLINE_STATUS:  # the job could only fail: say so now, not after it waited its turn
            raise ModelUnavailable(offline_reason(model))
        if len(repr(params)) > MAX_PARAMS_CHARS:
            raise ValueError(f"params are too large ({len(repr(params)):,} characters; at most {MAX_PARAMS_CHARS:,})")
        params, styles = self._styled(cls.Params, params, styles, owner)
        checked = cls.Params.from_dict(params).drawn(lambda: secrets.randbelow(MAX_SEED + 1))
        for name in cls.Params.image_fields():
            ref = getattr(checked, name)
            if ref and not self.inputs.exists(ref, owner=owner):  # another user's upload is not this user's to use
                raise ValueError(f"`{name}` refers to an input image that is not stored: {ref[:80]!r}")
        self._check_caps(checked.workload_for({ref: self.inputs.size(ref) for ref in checked.image_refs()}))
        key = checked.batch_key()
        # the wildcards the prompts reach (ValueError names a malformed or unknown one); their lines may name LoRAs
        # and embeddings as the prompts do, so those are resolved with the prompts' own
        wildcards = wildcard_files(checked.prompt_texts(), wildcard_folders(self.catalog.library.paths))
        lines = [line for path in wildcards.values() for line in read_lines(Path(path))]
        drawn_loras = [(kinds.LORA, tag.name) for line in lines for tag in network_tags(line)[1]]
        files = self._files_of([*checked.model_files(), *(drawn_loras if kinds.LORA in cls.prompt_networks else [])],
                               entry)
        if kinds.EMBEDDING in cls.prompt_networks:
            files.update(self._embeddings_in([*checked.prompt_texts(), *lines], entry))
        files.update({f"{WILDCARDS}:{name}": {"kind": WILDCARDS, "name": name, "path": path}
                      for name, path in wildcards.items()})
        recorded = {**entry.recorded(), "files": files}
        return JobSpec(pipeline=pipeline, model=entry.id, params=checked.to_dict(), seed=resolve_seed(seed),
                       owner=owner, priority=priority, model_entry=recorded, styles=styles,
                       batch_key=None if key is None else f"{pipeline}|{entry.id}|{entry.source}|{key}")

    def _styled(self, params_cls: type[BaseParams], params: Mapping[str, Any], names: Sequence[str],
                owner: str) -> tuple[Mapping[str, Any], tuple[str, ...]]:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ValueError("`styles` must be a list of style names")
        if not names:
            return params, ()
        if not {"prompt", "negative_prompt"} <= {spec["name"] for spec in params_cls.describe()}:
            raise ValueError("`styles` apply to prompts, and this generator takes none")
        if self.styles is None:
            raise ValueError("this studio keeps no prompt styles")
        chosen = self.styles.chosen(owner, names)  # StyleError (a ValueError) names an unknown one
        for name in ("prompt", "negative_prompt"):
            if not isinstance(params.get(name, ""), str):
                raise ValueError(f"`{name}` must be text, got {type(params[name]).__name__}")
        prompt, negative = apply(chosen, params.get("prompt", ""), params.get("negative_prompt", ""))
        return {**params, "prompt": prompt, "negative_prompt": negative}, tuple(s.name for s in chosen)

    def _files_of(self, wanted: list[tuple[str, str]], model: ModelEntry) -> dict[str, dict[str, Any]]:
        """The library files a job names (its LoRAs…), resolved now as its model is: name → where it is, its hash.
        An unknown, unusable or ambiguous name, or a file made for another base model, is refused here."""
        library = self.catalog.library
        found: dict[str, dict[str, Any]] = {}
        for kind, name in wanted:
            what = kinds.KINDS[kind]
            file = library.find(kind, name)  # AmbiguousModel (a ValueError) names both files
            if file is None:
                known = sorted({f.name for f in library.files(kind) if not f.problem})
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
                hint = f"; closest: {', '.join(close)}" if close else (f"; available: {', '.join(known[:10])}"
                                                                       if known else "; none is installed")
                raise ValueError(f"unknown {what} {name!r}{hint}")
            if file.problem:
                raise ValueError(f"{what} {file.id}: {file.problem}")
            if not kinds.fits(file.family, model.family):
                raise ValueError(f"{what} {file.id} was made for {kinds.FAMILIES[file.family]}, but the model "
                                 f"{model.id} is {kinds.FAMILIES[model.family]}")
            found.update(self._recorded(file, name))
        return found

    def _embeddings_in(self, texts: list[str], model: ModelEntry) -> dict[str, dict[str, Any]]:
        """The embeddings a prompt names by writing their file names as words (A1111's way), among those made for
        the model's family (A1111 skips the others); of two files of one name, the first listed, as A1111 keeps one.
        A word is never refused for looking like a name."""
        words = {w for text in texts for w in WORD.findall(text)}
        found: dict[str, dict[str, Any]] = {}
        for file in self.catalog.library.files(kinds.EMBEDDING, family=model.family):
            if file.name in words and not file.problem and f"{kinds.EMBEDDING}:{file.name}" not in found:
                found.update(self._recorded(file, file.name))
        return found

    def _recorded(self, file: ModelFile, name: str) -> dict[str, dict[str, Any]]:
        return {f"{file.kind}:{name}": {"kind": file.kind, "name": name, "id": file.id, "path": str(file.path),
                                        "sha256": self.catalog.library.sha256(file)}}

    def _check_caps(self, asked: Workload) -> None:
        if self.caps.images and asked.pictures > self.caps.images:
            raise ValueError(f"this job would make {asked.pictures:,} pictures; this studio allows at most "
                             f"{self.caps.images:,} per job (--max-images-per-job)")
        if self.caps.pixels and asked.pixels > self.caps.pixels:
            raise ValueError(f"this job asks for pictures of {asked.pixels / 1e6:.2f} megapixels; this studio allows "
                             f"at most {self.caps.pixels / 1e6:.2f} (--max-megapixels)")

    def submit(self, pipeline: str, model: str, params: Mapping[str, Any], seed: int | None = -1, *,
               owner: str = "local", priority: int = 0, styles: Sequence[str] = ()) -> Job:
        return self.queue.enqueue(self.build_spec(pipeline, model, params, seed, owner=owner, priority=priority,
                                                  styles=styles))

    def follow(self, job_id: str) -> Iterator[JobEvent]:
        """Events of one job as they happen, until the final one. When the hub is silent, the job's stored state as
        an event (JobEvent.of_state): a final state the hub never sent still ends the job in the one shape the UI
        and the API read, and a "waiting" event says it has not ended yet."""
        for event in self.events.follow(job_id):
            if event is None:
                event = JobEvent.of_state(self.queue.get(job_id))
            yield event
            if event.final:
                return

    # -- the dispatcher's side -------------------------------------------------------------------------
    def resolved(self, job: Job) -> ModelEntry:
        """The model a job was submitted with; for a job queued by an older version, the catalogue's entry now."""
        if job.spec.model_entry is not None:
            return ModelEntry.from_recorded(job.spec.model_entry)
        return self.catalog.model(job.spec.model, job.spec.pipeline)

    def prepare(self, job: Job) -> WorkOrder:
        cls = self.catalog.pipeline(job.spec.pipeline)
        entry = self.resolved(job)
        refs = cls.Params.from_dict(job.spec.params).image_refs()
        files = (job.spec.model_entry or {}).get("files", {})  # "kind:name" → where it is, its hash
        return WorkOrder(job_id=job.id, pipeline=pipeline_path(cls), model=entry.id, source=entry.source,
                         params=job.spec.params, seed=job.spec.seed, load_options=dict(entry.load_options),
                         inputs={ref: self.inputs.read_bytes(ref) for ref in refs}, expected_bytes=entry.size_bytes,
                         files={key: f["path"] for key, f in files.items()})

    def deliver(self, job: Job, result: Finished) -> list[str]:
        """Write every image with its recipe; ids are deterministic, so a re-run after a crash overwrites."""
        cls = self.catalog.pipeline(job.spec.pipeline)
        entry = self.resolved(job)
        a1111 = cls.Params.from_dict(job.spec.params).a1111_fields()
        # the hash known at submit, else the one hashed since (in the background), else what the worker read
        sha256 = entry.sha256 or self.catalog.library.sha256(Path(entry.source))
        model_hash = entry.hash or (sha256[:10] if sha256 else None) or result.info.get("model_hash")
        hashes = {"model_hash": model_hash, **({"model_sha256": sha256} if sha256 else {})}
        for kind, label, key in ((kinds.LORA, "Lora hashes", "lora_sha256"),
                                 (kinds.EMBEDDING, "TI hashes", "ti_sha256")):
            found = self._file_hashes(job, kind)
            if found:  # as A1111 writes them: 12 hex digits of each file's SHA-256
                a1111[label] = ", ".join(f"{name}: {digest[:12]}" for name, digest in found.items())
                hashes[key] = found
        if job.spec.styles:  # as A1111 writes them; the prompts are the expanded ones
            a1111["Styles array"] = json.dumps(list(job.spec.styles), ensure_ascii=False)
        created = time.time()
        # the licence travels with each image, so a restriction (e.g. non-commercial) is never separated from it
        terms = {"licence": entry.licence, **({"restriction": entry.restriction} if entry.restriction else {})}
        ids = []
        info = {k: v for k, v in result.info.items() if k not in DRAWN.values()}
        for index, (image, seed) in enumerate(zip(result.images, result.seeds, strict=True)):
            params, drawn = _drawn(job.spec.params, result.info, index)
            recipe = Recipe(
                pipeline=job.spec.pipeline, model=entry.id, model_hash=model_hash,
                params=params,
                seed=seed, owner=job.owner, job_id=job.id, index=index, count=len(result.images),
                app_version=__version__, a1111={**a1111, **drawn},
                info={**info, **hashes, **terms, "job_seed": job.spec.seed,
                      **({"styles": list(job.spec.styles)} if job.spec.styles else {}),
                      **({"prompt_template": _template(job.spec.params)} if drawn else {})},
                created_at=created,
            )
            try:
                ids.append(self.gallery.add(image, recipe, result.animations.get(index)).id)
            except Exception as e:  # noqa: BLE001 -- e.g. a full disk: what was saved stays, and is named
                raise DeliveryFailed(ids, len(result.images), e) from e
        return ids

    def _file_hashes(self, job: Job, kind: str) -> dict[str, str]:
        """name → SHA-256 of the job's files of `kind` (known at submit, else hashed since)."""
        found = {}
        for file in (job.spec.model_entry or {}).get("files", {}).values():
            digest = file.get("sha256") or self.catalog.library.sha256(Path(file["path"]))
            if file.get("kind") == kind and digest:
                found[file["name"]] = digest
        return found

    def settle_recovered(self, jobs: list[Job]) -> None:
        """After a restart: a re-queued job whose images all reached the gallery is complete, not re-run."""
        for job in jobs:
            saved = self.gallery.by_job(job.id)
            if saved and len(saved) == saved[0].recipe.count and not job.status.finished:
                self.queue.complete(job.id, [a.id for a in saved])
                logger.info("job %s had already saved its %d images before the restart", job.id, len(saved))


def _drawn(params: dict[str, Any], info: Mapping[str, Any], index: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Picture `index`'s params, with the prompts drawn for it when the job's prompts were dynamic (the pipeline
    reports them per picture in `info`), and A1111's fields for the templates (as its Dynamic Prompts writes them)."""
    drawn = {key: info[DRAWN[key]][index] for key in DRAWN if isinstance(info.get(DRAWN[key]), list)
             and index < len(info[DRAWN[key]])}
    if not drawn:
        return params, {}
    fields = {"Template": params.get("prompt", "")}
    if params.get("negative_prompt"):
        fields["Negative Template"] = params["negative_prompt"]
    return {**params, **drawn}, fields


def _template(params: Mapping[str, Any]) -> dict[str, str]:
    return {"prompt": params.get("prompt", ""), "negative_prompt": params.get("negative_prompt", "")}


def resolve_seed(seed: int | None) -> int:
    """-1 (or None) → a fresh random seed, recorded with the job so the image can be reproduced."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)  # HTML number inputs send 42.0
    if seed is None or seed == -1:
        return secrets.randbelow(MAX_SEED + 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"`seed` must be a whole number, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"`seed` must be -1 (random) or between 0 and {MAX_SEED}, got {seed}")
    return seed
