"""Jobs run together as one batch give each job the pictures it would get alone, with its own seeds, previews and
warnings; jobs that cannot share a batch (by key, or by prompt length) are kept apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.base import BatchItem, Interrupted
from pipelines.catalog import Catalog
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_sd

BASE = {"width": 64, "height": 64, "num_steps": 3}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu")


@pytest.fixture(scope="module")
def bundled() -> TextToImagePipeline:
    """The bundled model: a sentence encoder, whose prompts diffusers encodes as a list."""
    entry = Catalog().model("atelier-emoji-diffusion", "text_to_image")
    return TextToImagePipeline.load(entry.source, device="cpu", **entry.load_options)


def params(**values: object) -> TextToImageParams:
    return TextToImageParams.from_dict({**BASE, **values})


def close(a, b) -> bool:
    """The same picture to within rounding: a batched matmul may differ from a single one in the last bits."""
    return np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max() <= 2


@pytest.mark.parametrize("which", ["tiny", "bundled"])
def test_a_batch_gives_each_job_what_it_gets_alone(which: str, request: pytest.FixtureRequest) -> None:
    pipe: TextToImagePipeline = request.getfixturevalue(which)
    jobs = [(params(prompt="a red apple", batch_size=2), 7), (params(prompt="a blue sea", negative_prompt="fog",
                                                                     batch_size=2), 100),
            (params(prompt="", batch_size=2), 7)]
    assert len({p.batch_key() for p, _ in jobs}) == 1
    steps: list[list[int]] = [[] for _ in jobs]
    items = [BatchItem(p, seed, on_step=lambda step, total, preview, j=j: steps[j].append(step))
             for j, (p, seed) in enumerate(jobs)]
    results = pipe.run_batch(items)
    for (p, seed), result, seen in zip(jobs, results, steps, strict=True):
        alone = pipe(p, seed=seed)
        assert result.seeds == alone.seeds == [seed, seed + 1]
        assert all(close(a, b) for a, b in zip(result.images, alone.images, strict=True))
        assert seen == [1, 2, 3] and result.info["batched_with"] == 2
    assert not close(results[0].images[0], results[1].images[0])  # different prompts, different pictures


def test_only_txt2img_jobs_that_differ_in_their_prompts_share_a_key() -> None:
    key = params(prompt="a", negative_prompt="b").batch_key()
    assert key is not None and params(prompt="c").batch_key() == key
    for other in ({"num_steps": 4}, {"width": 128}, {"sampler": "DDIM"}, {"cfg_scale": 3}, {"batch_size": 2}):
        assert params(**other).batch_key() != key, other
    for alone in ({"batch_count": 2}, {"keep_partial": True}, {"init_image": "ref"}):
        assert params(**alone).batch_key() is None, alone


def test_prompts_of_different_lengths_run_one_after_another(tiny: TextToImagePipeline) -> None:
    long = " ".join(["apple"] * 100)  # two 75-token chunks: its embeddings are longer than a short prompt's
    jobs = [BatchItem(params(prompt="a pear"), 1), BatchItem(params(prompt=long), 2)]
    results = tiny.run_batch(jobs)
    assert [r.seeds for r in results] == [[1], [2]] and "batched_with" not in results[0].info
    assert close(results[1].images[0], tiny(params(prompt=long), seed=2).images[0])


def test_stop_ends_the_whole_batch(tiny: TextToImagePipeline) -> None:
    with pytest.raises(Interrupted):
        tiny.run_batch([BatchItem(params(prompt="a"), 1), BatchItem(params(prompt="b"), 2)], should_stop=lambda: True)


def test_the_default_runs_jobs_in_turn(tmp_path: Path) -> None:
    from tests.support.pattern import PatternParams, PatternPipeline

    pipe = PatternPipeline.load("pattern-v1", device="cpu")
    jobs = [BatchItem(PatternParams.from_dict({"prompt": p}), s) for p, s in (("x", 1), ("y", 2))]
    assert [r.seeds for r in pipe.run_batch(jobs)] == [[1], [2]]
