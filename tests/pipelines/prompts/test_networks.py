"""`<lora:…>` tags as A1111 writes them, and the weights it refuses."""

from __future__ import annotations

import time

import pytest

from pipelines.prompts.networks import NetworkTag, network_tags


@pytest.mark.parametrize(("prompt", "text", "tags"), [
    ("a cat <lora:ink:0.8>", "a cat ", [NetworkTag("ink", 0.8, 0.8)]),
    ("<lora:ink>", "", [NetworkTag("ink", 1.0, 1.0)]),
    ("<lora:ink:1:0.5> and <lyco:paper loha:0.3>", " and ", [NetworkTag("ink", 1.0, 0.5),
                                                            NetworkTag("paper loha", 0.3, 0.3)]),
    ("<lora:ink:te=0.2:unet=0.9>", "", [NetworkTag("ink", 0.2, 0.9)]),
    ("<lora:ink:unet=0>", "", [NetworkTag("ink", 1.0, 0.0)]),
    ("<lora:ink:0.5> <lora:ink:0.7>", " ", [NetworkTag("ink", 0.7, 0.7)]),  # one network once: the last wins
    ("a <b> c <hypernet:x:1>", "a <b> c <hypernet:x:1>", []),
])
def test_tags_are_read_and_taken_out(prompt: str, text: str, tags: list[NetworkTag]) -> None:
    assert network_tags(prompt) == (text, tags)


@pytest.mark.parametrize(("prompt", "words"), [
    ("<lora:ink:nan>", "finite"), ("<lora:ink:inf>", "finite"), ("<lora:ink:11>", "from -10 to 10"),
    ("<lora:ink:-10.5>", "from -10 to 10"), ("<lora:ink:lots>", "not a number"), ("<lora::1>", "names no LoRA"),
    ("<lora:ink:1:2:3>", "at most two"), ("<lora:ink:clip=1>", "unknown weight 'clip'"),
])
def test_bad_weights_are_refused_by_name(prompt: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        network_tags(prompt)


def test_a_hostile_prompt_is_read_in_linear_time() -> None:
    start = time.perf_counter()
    network_tags("<lora:" * 100_000 + ">" + "<" * 100_000)
    assert time.perf_counter() - start < 1
