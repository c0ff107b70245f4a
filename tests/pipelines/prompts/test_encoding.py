"""Weighted prompts on a tiny random SD 1.x model: each token's weight, BREAK and comma chunking, and prompt editing
switching the embeddings the UNet sees at the right step."""

from __future__ import annotations

import pytest
import torch

from pipelines.prompts.encoding import MAX_TOKENS, clip_conditioning, encode, weighted_chunks
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_sd


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    # float32 on every CPU: these tests check the weights' arithmetic, which bf16's rounding would blur
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu",
                                    dtype="fp32")


def chunks(pipe: TextToImagePipeline, text: str):
    return weighted_chunks(pipe.pipe.tokenizer, text, "prompt", [])


def embeds(pipe: TextToImagePipeline, text: str) -> torch.Tensor:
    with torch.no_grad():
        return encode(pipe.pipe, chunks(pipe, text), clip_skip=1)


def test_each_token_carries_its_weight(pipe: TextToImagePipeline) -> None:
    tokenizer = pipe.pipe.tokenizer
    (chunk,) = chunks(pipe, "a (red:1.5) [apple]")
    assert chunk.ids == tokenizer("a red apple", add_special_tokens=False).input_ids
    assert chunk.weights == pytest.approx([1.0, 1.5, 1 / 1.1])
    assert torch.equal(embeds(pipe, "(red apple:1)"), embeds(pipe, "red apple"))  # weight 1 changes nothing
    assert not torch.allclose(embeds(pipe, "(red:1.5) apple"), embeds(pipe, "red apple"))


def test_weights_keep_the_chunks_mean(pipe: TextToImagePipeline) -> None:
    plain, weighted = embeds(pipe, "red apple"), embeds(pipe, "(red:1.8) (apple:0.4)")
    assert weighted.mean().item() == pytest.approx(plain.mean().item(), rel=1e-4)


def test_break_and_a_late_comma_start_a_new_chunk(pipe: TextToImagePipeline) -> None:
    assert [len(c.ids) for c in chunks(pipe, "a cat BREAK a dog")] == [2, 2]
    words = ["castle"] * 70 + [","] + ["tower"] * 10  # a comma at token 71: the first chunk ends after it
    split = chunks(pipe, " ".join(words))
    assert [len(c.ids) for c in split] == [71, 10] and all(len(c.ids) <= MAX_TOKENS for c in split)


def test_prompt_editing_switches_the_embeddings_at_its_step(pipe: TextToImagePipeline) -> None:
    seen: list[torch.Tensor] = []
    unet = pipe.pipe.unet
    forward = unet.forward

    def recording(*args, **kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())
        return forward(*args, **kwargs)

    unet.forward = recording
    try:
        params = {"prompt": "a [cat:dog:0.5] in snow", "width": 64, "height": 64, "num_steps": 4, "cfg_scale": 5}
        pipe(TextToImageParams.from_dict(params), seed=1)
    finally:
        unet.forward = forward
    cat, dog = embeds(pipe, "a cat in snow"), embeds(pipe, "a dog in snow")
    positive = [step[1:] for step in seen]  # classifier-free guidance: the negative prompt's row comes first
    assert [torch.equal(p, cat) for p in positive] == [True, True, False, False]
    assert [torch.equal(p, dog) for p in positive] == [False, False, True, True]


def test_alternation_and_editing_pad_every_stretch_to_one_length(pipe: TextToImagePipeline) -> None:
    long = "castle " * 100  # two chunks
    conditioning = clip_conditioning(pipe.pipe, f"[{long}|a cat]", "", 4, 1, [])
    assert [end for end, _ in conditioning.stretches] == [1, 2, 3, 4]
    assert {tuple(t.shape) for _, e in conditioning.stretches for t in (e.positive, e.negative)} == {(1, 154, 32)}
