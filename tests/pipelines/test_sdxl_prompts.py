"""SDXL prompts on a tiny random SDXL model, as A1111 encodes them: a plain prompt exactly as diffusers encodes it
(so plain prompts give the pictures they gave before), emphasis per token, 75-token chunks and BREAK through both
encoders, prompt editing swapping the embeddings and pooled embeddings at its step, kohya SDXL LoRAs, SDXL
embeddings, and batched jobs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines.base import BatchItem
from pipelines.diffusion_utils import make_scheduler, model_family
from pipelines.prompts.encoding import Embeds, weighted_chunks
from pipelines.prompts.sdxl import sdxl_conditioning
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sdxl import save_tiny_sdxl, save_tiny_sdxl_lora

BASE = {"width": 64, "height": 64, "num_steps": 2, "sampler": "Euler", "cfg_scale": 7}
PROMPT = "a red apple on a table"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextToImagePipeline, dict[str, str]]:
    root = tmp_path_factory.mktemp("models")
    # float32 on every CPU: these tests compare embeddings arithmetically, which bf16 rounding would blur
    pipe = TextToImagePipeline.load(str(save_tiny_sdxl(root / "tiny-sdxl")), device="cpu", dtype="fp32")
    files = {"lora:ink": str(save_tiny_sdxl_lora(root / "ink.safetensors", pipe.pipe, seed=1))}
    widths = (pipe.pipe.text_encoder.config.hidden_size, pipe.pipe.text_encoder_2.config.hidden_size)
    for name, vectors in (("shinyfur", 1), ("triplestar", 3)):
        generator = torch.Generator().manual_seed(vectors)
        state = {part: torch.randn(vectors, width, generator=generator) * 3
                 for part, width in zip(("clip_l", "clip_g"), widths, strict=True)}
        save_file(state, str(root / f"{name}.safetensors"))
        files[f"embedding:{name}"] = str(root / f"{name}.safetensors")
    return pipe, files


def run(tiny, prompt: str, *embeddings: str, **params: object) -> Image.Image:
    """The picture of `prompt` at seed 1, sent with the LoRA and the `embeddings` named."""
    pipe, files = tiny
    sent = {key: path for key, path in files.items() if key == "lora:ink" or key.partition(":")[2] in embeddings}
    return pipe(TextToImageParams.from_dict({**BASE, "prompt": prompt, **params}), seed=1, files=sent).images[0]


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def embeds(tiny, prompt: str, negative: str = "", clip_skip: int = 1) -> Embeds:
    pipe, _ = tiny
    return sdxl_conditioning(pipe.pipe, prompt, negative, BASE["num_steps"], clip_skip, []).at(1)


@contextmanager
def unet_inputs(pipe: TextToImagePipeline) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """The (text embeddings, pooled text embeddings) the UNet is given at each step."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    unet = pipe.pipe.unet
    forward = unet.forward

    def recording(*args, **kwargs):
        seen.append((kwargs["encoder_hidden_states"].clone(), kwargs["added_cond_kwargs"]["text_embeds"].clone()))
        return forward(*args, **kwargs)

    unet.forward = recording
    try:
        yield seen
    finally:
        unet.forward = forward


def test_the_tiny_model_is_sdxl(tiny) -> None:
    pipe, _ = tiny
    assert model_family(pipe.pipe) == pipe.family == "sdxl"
    assert pipe.pipe.tokenizer.pad_token_id != pipe.pipe.tokenizer_2.pad_token_id  # "!" pads the second, as open_clip


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_a_plain_prompt_is_encoded_as_diffusers_encodes_it(tiny, clip_skip: int) -> None:
    pipe, _ = tiny
    ours = embeds(tiny, PROMPT, "blurry", clip_skip)
    positive, negative, pooled, negative_pooled = pipe.pipe.encode_prompt(
        PROMPT, device="cpu", negative_prompt="blurry", clip_skip=clip_skip - 1 or None)
    assert ours.positive.shape == (1, 77, 64) and ours.pooled.shape == (1, 32)
    assert torch.allclose(ours.positive, positive) and torch.allclose(ours.pooled, pooled)
    assert torch.allclose(ours.negative_pooled, negative_pooled)
    if clip_skip == 1:  # diffusers reads a negative prompt's penultimate layer whatever the clip skip; A1111 skips
        assert torch.allclose(ours.negative, negative)
    empty = embeds(tiny, PROMPT, "")  # force_zeros_for_empty_prompt: zeros, as diffusers and A1111 give
    assert not empty.negative.any() and not empty.negative_pooled.any()


def test_a_plain_prompt_gives_the_picture_diffusers_gives(tiny) -> None:
    pipe, _ = tiny
    for negative in ("", "blurry"):
        ours = run(tiny, PROMPT, negative_prompt=negative)
        pipe.pipe.scheduler = make_scheduler("Euler", pipe.pipe.scheduler)
        theirs = pipe.pipe(prompt=PROMPT, negative_prompt=negative or None, num_inference_steps=BASE["num_steps"],
                           guidance_scale=BASE["cfg_scale"], width=64, height=64,
                           generator=[torch.Generator().manual_seed(1)]).images[0]
        assert np.array_equal(pixels(ours), pixels(theirs)), negative


def test_a_weight_scales_its_tokens_in_both_encoders_and_keeps_each_encoders_mean(tiny) -> None:
    plain, weighted = embeds(tiny, "a red apple"), embeds(tiny, "a red (apple:1.5)")
    scale = torch.ones(1, 77, 1)
    scale[0, 3] = 1.5  # start, a, red, apple
    for half in (slice(0, 32), slice(32, 64)):  # CLIP ViT-L's states, then OpenCLIP's: each keeps its own mean
        expected = plain.positive[..., half] * scale
        expected = expected * (plain.positive[..., half].mean() / expected.mean())
        assert torch.allclose(weighted.positive[..., half], expected, atol=1e-6)
    assert torch.equal(weighted.pooled, plain.pooled)  # the pooled embedding is the encoder's own, as in A1111
    assert not np.array_equal(pixels(run(tiny, "a red (apple:1.5)")), pixels(run(tiny, "a red apple")))


def test_long_prompts_and_break_are_chunked_through_both_encoders(tiny) -> None:
    long = embeds(tiny, " ".join(["apple"] * 100))
    assert long.positive.shape == (1, 154, 64)
    cat, dog, both = embeds(tiny, "a cat"), embeds(tiny, "a dog"), embeds(tiny, "a cat BREAK a dog")
    assert both.positive.shape == (1, 154, 64) and both.negative.shape == (1, 154, 64)
    # each chunk is its own window (encoded in one batch: equal to within the last bits)
    assert torch.allclose(both.positive[:, :77], cat.positive, atol=1e-6)
    assert torch.allclose(both.positive[:, 77:], dog.positive, atol=1e-6)
    assert torch.allclose(both.pooled, cat.pooled, atol=1e-6)  # the first chunk's, as A1111
    warnings: list[str] = []
    sdxl_conditioning(tiny[0].pipe, "apple " * 700, "", 3, 1, warnings)
    assert warnings == ["the prompt is 700 tokens; only the first 600 were used"]  # once for both tokenizers


@pytest.mark.parametrize("mode", ["txt2img", "img2img", "inpaint"])
def test_prompt_editing_swaps_the_embeddings_and_pooled_embeddings_at_its_step(tiny, mode: str) -> None:
    pipe, _ = tiny
    extra: dict[str, object] = {"num_steps": 4}
    inputs = None
    if mode != "txt2img":  # half the steps run: [a cat:a dog:0.5] swaps after the first of them
        inputs = {"in-photo": Image.new("RGB", (64, 64), "olive"), "in-mask": Image.new("L", (64, 64), 255)}
        extra.update(init_image="in-photo", strength=0.5, **({"mask": "in-mask"} if mode == "inpaint" else {}))
    prompt = "[a cat:a dog:2]" if mode == "txt2img" else "[a cat:a dog:0.5]"
    with unet_inputs(pipe) as seen:
        pipe(TextToImageParams.from_dict({**BASE, **extra, "prompt": prompt}), seed=1, inputs=inputs)
    cat, dog = embeds(tiny, "a cat"), embeds(tiny, "a dog")
    expected = [cat, cat, dog, dog] if mode == "txt2img" else [cat, dog]
    assert len(seen) == len(expected)
    for (states, pooled), want in zip(seen, expected, strict=True):
        # classifier-free guidance: the negative prompt's row first (zeros for an empty one), then the prompt's
        assert torch.equal(states[1:], want.positive) and torch.equal(pooled[1:], want.pooled)
        assert not states[0].any() and not pooled[0].any()


def test_a_kohya_sdxl_lora_changes_the_picture_and_leaves_nothing_behind(tiny) -> None:
    base = pixels(run(tiny, PROMPT))
    assert np.array_equal(pixels(run(tiny, f"{PROMPT} <lora:ink:0>")), base)
    full = pixels(run(tiny, f"{PROMPT} <lora:ink:1>"))
    assert np.abs(full - base).mean() > 0.5
    assert np.array_equal(pixels(run(tiny, PROMPT)), base)  # switched off after its job
    encoders, unet = pixels(run(tiny, f"{PROMPT} <lora:ink:1:0>")), pixels(run(tiny, f"{PROMPT} <lora:ink:0:1>"))
    assert not np.array_equal(encoders, unet)
    assert all(np.abs(part - base).mean() > 0.5 and not np.array_equal(part, full) for part in (encoders, unet))


def test_an_sdxl_embedding_changes_the_picture_and_takes_its_vectors_positions(tiny) -> None:
    pipe, files = tiny
    plain = pixels(run(tiny, "a cat shinyfur"))  # not sent with the job: plain words
    assert np.abs(pixels(run(tiny, "a cat shinyfur", "shinyfur")) - plain).mean() > 0.5
    pipe.embeddings.ensure({"triplestar": files["embedding:triplestar"]})
    for tokenizer in (pipe.pipe.tokenizer, pipe.pipe.tokenizer_2):  # both encoders read all three vectors
        text = pipe.embeddings.expand("a triplestar sky", tokenizer)
        assert text == "a triplestar triplestar_1 triplestar_2 sky"
        (chunk,) = weighted_chunks(tokenizer, text, "prompt", [])
        assert len(chunk.ids) == len(weighted_chunks(tokenizer, "a sky", "prompt", [])[0].ids) + 3
    assert np.abs(pixels(run(tiny, "a triplestar sky", "triplestar")) - pixels(run(tiny, "a sky"))).mean() > 0.5


def test_a_batch_of_sdxl_jobs_gives_each_job_what_it_gets_alone(tiny) -> None:
    pipe, _ = tiny
    jobs = [({"prompt": "a red apple"}, 7), ({"prompt": "a blue sea", "negative_prompt": "fog"}, 100),
            ({"prompt": ""}, 7)]
    items = [BatchItem(TextToImageParams.from_dict({**BASE, **values, "batch_size": 2}), seed)
             for values, seed in jobs]
    assert len({item.params.batch_key() for item in items}) == 1
    results = pipe.run_batch(items)
    for item, result in zip(items, results, strict=True):
        alone = pipe(item.params, seed=item.seed)
        assert result.info["batched_with"] == 2 and result.seeds == alone.seeds
        assert all(np.abs(pixels(a) - pixels(b)).max() <= 2 for a, b in zip(result.images, alone.images, strict=True))
    assert not np.array_equal(pixels(results[0].images[0]), pixels(results[1].images[0]))
