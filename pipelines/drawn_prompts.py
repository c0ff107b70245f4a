"""Jobs whose prompts have variants or wildcards (pipelines.prompts.wildcards): each picture gets the prompts drawn
from its own seed, so the pictures of one job differ in their prompts, and any of them can be made again alone from
its seed. They run one picture at a time (prompts that differ cannot share one denoising call without padding every
prompt to the longest); each picture's prompts are reported in the result's info, for its recipe."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.base import ImageResult, OnStep
from pipelines.prompts.wildcards import WILDCARDS, draw

# one picture: (its params, its seed, its progress callback) → its result
RunOne = Callable[[Any, int, OnStep | None], ImageResult]


def wildcard_paths(files: Mapping[str, str]) -> dict[str, str]:
    """The wildcard files among a job's files: name → path."""
    prefix = f"{WILDCARDS}:"
    return {key[len(prefix):]: path for key, path in files.items() if key.startswith(prefix)}


def run_each_drawn(params: Any, seed: int, files: Mapping[str, str], on_step: OnStep | None,
                   run_one: RunOne) -> ImageResult:
    """Picture i of the job from seed + i, with the prompts drawn for that seed and its own variation seed (the job's
    + i, as a batch counts them); progress counts over all pictures. A picture stopped and kept partial ends the
    job there."""
    wildcards = wildcard_paths(files)
    count = params.batch_size * params.batch_count
    images, seeds, prompts, negatives, warnings = [], [], [], [], []
    info: dict[str, Any] = {}
    for i in range(count):
        own = seed + i
        one = dataclasses.replace(
            params, prompt=draw(params.prompt, own, wildcards),
            negative_prompt=draw(params.negative_prompt, own, wildcards), batch_size=1, batch_count=1,
            subseed=(params.subseed + i) % 2**32 if params.subseed >= 0 else -1)
        result = run_one(one, own, _counted(on_step, i, count))
        images += result.images
        seeds += result.seeds
        prompts.append(one.prompt)
        negatives.append(one.negative_prompt)
        warnings += [w for w in result.info.get("warnings", []) if w not in warnings]
        info = info or dict(result.info)
        if result.info.get("partial"):
            info["partial"] = True
            break
    info.pop("warnings", None)
    return ImageResult(images=images, seeds=seeds, info={**info, "prompts": prompts, "negative_prompts": negatives,
                                                         **({"warnings": warnings} if warnings else {})})


def _counted(on_step: OnStep | None, index: int, count: int) -> OnStep | None:
    """Progress of picture `index` as a part of the whole job's."""
    if on_step is None:
        return None

    def step(done: int, total: int, preview: Any) -> None:
        on_step(index * total + done, count * total, preview)

    return step
