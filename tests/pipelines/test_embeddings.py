"""Textual-inversion embeddings on the tiny SD model: named by their file name in a prompt, one vector or several."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pipelines.base import PipelineError
from pipelines.prompts.encoding import weighted_chunks
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a cat", "width": 64, "height": 64, "num_steps": 3, "sampler": "Euler"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextToImagePipeline, dict[str, str]]:
    root = tmp_path_factory.mktemp("models")
    pipe = TextToImagePipeline.load(str(save_tiny_sd(root / "tiny-sd")), device="cpu")
    width = pipe.pipe.text_encoder.config.hidden_size
    files = {}
    for name, vectors in (("shinyfur", 1), ("triplestar", 3)):
        path = root / f"{name}.safetensors"
        save_file({"emb_params": torch.randn(vectors, width, generator=torch.Generator().manual_seed(vectors)) * 3},
                  str(path))
        files[f"embedding:{name}"] = str(path)
    (root / "broken.safetensors").write_bytes(b"not an embedding")
    files["embedding:brokenone"] = str(root / "broken.safetensors")
    return pipe, files


def picture(tiny, prompt: str, **files: str) -> np.ndarray:
    pipe, _ = tiny
    result = pipe(TextToImageParams.from_dict({**BASE, "prompt": prompt}), seed=1, files=files or None)
    return np.asarray(result.images[0], dtype=np.int16)


def test_an_embedding_named_in_the_prompt_changes_the_picture(tiny) -> None:
    _, files = tiny
    plain = picture(tiny, "a cat shinyfur")  # not loaded yet: plain words
    with_embedding = picture(tiny, "a cat shinyfur", **{"embedding:shinyfur": files["embedding:shinyfur"]})
    assert np.abs(with_embedding - plain).mean() > 0.5
    assert np.array_equal(picture(tiny, "a cat"), picture(tiny, "a cat"))  # a prompt without it: untouched


def test_a_multi_vector_embedding_takes_all_its_tokens(tiny) -> None:
    pipe, files = tiny
    pipe.embeddings.ensure({"triplestar": files["embedding:triplestar"]})
    text = pipe.embeddings.expand("a triplestar sky")
    assert text == "a triplestar triplestar_1 triplestar_2 sky"
    (chunk,) = weighted_chunks(pipe.pipe.tokenizer, text, "prompt", [])
    assert len(chunk.ids) == len(weighted_chunks(pipe.pipe.tokenizer, "a sky", "prompt", [])[0].ids) + 3


def test_a_broken_embedding_fails_its_job_by_name(tiny) -> None:
    _, files = tiny
    with pytest.raises(PipelineError, match="cannot load the embedding broken.safetensors"):
        picture(tiny, "a cat brokenone", **{"embedding:brokenone": files["embedding:brokenone"]})
    assert picture(tiny, "a cat").shape == (64, 64, 3)  # the next job runs
