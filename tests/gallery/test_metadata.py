"""Recipe JSON, AUTOMATIC1111 `parameters` text and PNG text chunks: round trips and real-world input."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.gallery import format_parameters, metadata, parse_parameters, png_info, read_png_text, read_recipe
from studio.gallery.metadata import MAX_PARAMETERS_CHARS, Recipe
from tests.gallery.conftest import make_recipe, noise

REAL_A1111 = (
    "masterpiece, 1girl\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 512x768, Model hash: 6ce0161689, "
    "Model: v1-5-pruned-emaonly, Version: v1.6.0"
)


def test_format_parameters_matches_a1111_layout() -> None:
    assert format_parameters(make_recipe()) == (
        "a red fox\nNegative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Size: 512x512, Seed: 42, Model: sd-turbo, "
        "Pipeline: text_to_image, Version: atelier 0.1.0"
    )


def test_format_omits_empty_negative_and_writes_model_hash() -> None:
    text = format_parameters(make_recipe(params={"prompt": "a cat"}, model_hash="abc123", a1111={}))
    assert text == (
        "a cat\nSeed: 42, Model hash: abc123, Model: sd-turbo, Pipeline: text_to_image, Version: atelier 0.1.0"
    )


def test_reserved_a1111_keys_do_not_contradict_the_recipe() -> None:
    parsed = parse_parameters(format_parameters(make_recipe(a1111={"Seed": 1, "Model": "other"})))
    assert (parsed["Seed"], parsed["Model"]) == ("42", "sd-turbo")


def test_round_trip_multiline_prompt_and_tricky_values() -> None:
    recipe = make_recipe(
        params={"prompt": "a red fox,\nin the snow: winter\n\n  oil painting", "negative_prompt": "blurry,\nugly"},
        a1111={"Steps": 20, "Sampler": "DPM++ 2M, Karras", "Note": 'say "hi"', "Lora hashes": "a: 1, b: 2",
               "Multi": "line1\nline2", "Padded": " x ", "Flag": True, "Scale": 7.5, "Empty": ""},
    )
    parsed = parse_parameters(format_parameters(recipe))
    assert parsed["prompt"] == "a red fox,\nin the snow: winter\n\n  oil painting"
    assert parsed["negative_prompt"] == "blurry,\nugly"
    assert parsed["Sampler"] == "DPM++ 2M, Karras"
    assert parsed["Note"] == 'say "hi"'
    assert parsed["Lora hashes"] == "a: 1, b: 2"
    assert parsed["Multi"] == "line1\nline2"
    assert parsed["Padded"] == " x "
    assert (parsed["Flag"], parsed["Scale"], parsed["Empty"], parsed["Steps"]) == ("True", "7.5", "", "20")
    assert (parsed["Seed"], parsed["Model"], parsed["Version"]) == ("42", "sd-turbo", "atelier 0.1.0")


def test_parse_real_a1111_text() -> None:
    assert parse_parameters(REAL_A1111) == {
        "prompt": "masterpiece, 1girl",
        "negative_prompt": "lowres, bad anatomy",
        "Steps": "28",
        "Sampler": "DPM++ 2M Karras",
        "CFG scale": "7",
        "Seed": "1234567",
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Version": "v1.6.0",
    }


def test_parse_a1111_quoted_value_and_crlf() -> None:
    text = 'a cat\r\nSteps: 20, Lora hashes: "add_detail: 7c6bad76eb54, more: 1234", Seed: 5\r\n'
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "a cat"
    assert parsed["Lora hashes"] == "add_detail: 7c6bad76eb54, more: 1234"
    assert parsed["Seed"] == "5"


def test_parse_text_without_parameter_line_is_all_prompt() -> None:
    assert parse_parameters("a castle\non a hill, style: oil") == {
        "prompt": "a castle\non a hill, style: oil",
        "negative_prompt": "",
    }


def test_parse_empty_prompt_as_a1111_writes_it() -> None:
    parsed = parse_parameters("Negative prompt: ugly\nSteps: 10, Seed: 3, Size: 64x64")
    assert (parsed["prompt"], parsed["negative_prompt"], parsed["Steps"]) == ("", "ugly", "10")


def test_recipe_json_round_trip() -> None:
    recipe = make_recipe(
        params={"prompt": "renard roux 🦊", "width": 512, "guidance": 7.5, "tags": ["a", "b"], "x": None},
        seed=2**64 - 1, model_hash="deadbeef", info={"scheduler": "euler"}, index=2, count=4,
    )
    restored = Recipe.from_json(recipe.to_json())
    assert restored == recipe
    assert restored.seed == 2**64 - 1
    assert hash(restored) == hash(recipe)


def test_recipe_from_json_ignores_unknown_keys_and_defaults_optional_ones() -> None:
    data = json.loads(make_recipe().to_json())
    del data["model_hash"], data["a1111"], data["info"]
    data["added_by_a_newer_version"] = 1
    restored = Recipe.from_json(json.dumps(data))
    assert (restored.model_hash, restored.a1111, restored.info) == (None, {}, {})


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: "[1, 2]", "must be a JSON object"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k not in ("seed", "job_id")}), "seed, job_id"),
        (lambda d: json.dumps({**d, "seed": "42"}), "`seed` must be a whole number"),
        (lambda d: json.dumps({**d, "seed": True}), "`seed` must be a whole number"),
        (lambda d: json.dumps({**d, "params": [1]}), "`params` must be an object"),
        (lambda d: json.dumps({**d, "index": 3}), "`index` must be in 0..0"),
        (lambda d: json.dumps({**d, "created_at": "today"}), "`created_at` must be a unix time"),
        (lambda d: json.dumps({**d, "recipe_version": 99}), "newer than this Atelier"),
    ],
)
def test_recipe_from_json_errors(mutate, message: str) -> None:
    data = json.loads(make_recipe().to_json())
    with pytest.raises(ValueError, match="recipe") as info:
        Recipe.from_json(mutate(data))
    assert message in str(info.value)


def test_recipe_rejects_values_that_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="`params` must hold only JSON values"):
        make_recipe(params={"prompt": "x", "image": object()})
    with pytest.raises(ValueError, match="a1111 key 'Bad, key'"):
        make_recipe(a1111={"Bad, key": 1})


def test_png_chunks_round_trip_through_a_file(tmp_path: Path) -> None:
    recipe = make_recipe(params={"prompt": "ein Fuchs im Schnee, 狐"})  # non-Latin-1 forces iTXt
    path = tmp_path / "a.png"
    noise().save(path, pnginfo=png_info(recipe))
    text = read_png_text(path)
    assert set(text) == {"parameters", "atelier"}
    assert text["parameters"] == format_parameters(recipe)
    assert read_recipe(path) == recipe


# What A1111's regex (and this module's, until it was rewritten) did in quadratic time: a run of whitespace, which
# `\s*` and the key's space both take (8,000 spaces: 1.5 s), and other lines where no pair starts or many do.
HOSTILE_UNITS = [" ", "\t", " \t", "a ", "a", "-/ _", ":", '"', "Steps: 1, ", 'k:"\\,']


@pytest.mark.parametrize("unit", HOSTILE_UNITS)
def test_parsing_a_hostile_parameters_line_takes_linear_time(unit: str) -> None:
    def seconds(n: int) -> float:
        line = unit * (n // len(unit))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            metadata._parse_pairs(line)
            best = min(best, time.perf_counter() - start)
        return best

    small, large = seconds(1_000_000), seconds(4_000_000)
    assert large < 10 * small  # 4× the text: about 4× the time (quadratic would be 16×)
    with pytest.raises(ValueError, match="at most 200,000 are read"):
        parse_parameters("a" * (MAX_PARAMETERS_CHARS + 1))


def test_pairs_are_the_ones_a1111s_own_regex_finds() -> None:
    a1111 = re.compile(r'\s*(\w[\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')  # re_param_code, quadratic
    rng = random.Random(0)
    for _ in range(20_000):
        line = "".join(rng.choice('a b-/:,"\\\t\u3000é_1') for _ in range(rng.randint(0, 16)))
        expected = {m[1]: metadata._unquote(m[2].strip()) for m in a1111.finditer(line)}
        assert metadata._parse_pairs(line) == expected, line


def test_pairs_are_found_as_a1111_finds_them() -> None:
    line = 'Steps: 20, Sampler: "Euler, a", bad words, Note: "open, Size: 512x512, x: "y"z, Weird key-/ 2: v'
    assert parse_parameters("p\n" + line) == {
        "prompt": "p", "negative_prompt": "", "Steps": "20", "Sampler": "Euler, a", "Note": '"open',
        "Size": "512x512", "x": '"y"z', "Weird key-/ 2": "v"}


def test_text_chunks_are_read_without_decoding_a_pixel(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    info = PngInfo()
    info.add_text("parameters", REAL_A1111)
    info.add_itxt("atelier", "{}", zip=True)
    Image.new("1", (20_000, 20_000)).save(path, pnginfo=info)  # 400 megapixels in a few kB: decoded, 400 MB
    tracemalloc.start()
    try:
        text = read_png_text(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text == {"parameters": REAL_A1111, "atelier": "{}"} and peak < 5_000_000
    with pytest.raises(OSError, match="breaks off"):
        read_png_text(io.BytesIO(path.read_bytes()[:60]))
    with pytest.raises(OSError, match="no PNG signature"):
        read_png_text(io.BytesIO(b"GIF89a" + b"\0" * 100))
    bomb = PngInfo()
    bomb.add_itxt("parameters", "x" * 9_000_000, zip=True)  # 9 MB of text in a few kB of zlib
    Image.new("1", (8, 8)).save(path, pnginfo=bomb)
    with pytest.raises(ValueError, match="larger than 8 MB"):
        read_png_text(path)


def test_read_png_text_reads_a_file_object() -> None:
    buffer = io.BytesIO()
    noise().save(buffer, format="PNG", pnginfo=png_info(make_recipe()))
    buffer.seek(0)
    assert parse_parameters(read_png_text(buffer)["parameters"])["prompt"] == "a red fox"


def test_read_recipe_none_without_chunk_and_warns_on_invalid(tmp_path: Path, caplog) -> None:
    plain, invalid = tmp_path / "plain.png", tmp_path / "invalid.png"
    noise().save(plain)
    info = PngInfo()
    info.add_text("atelier", '{"pipeline": "gan"}')
    noise().save(invalid, pnginfo=info)
    with caplog.at_level(logging.WARNING, logger="studio.gallery.metadata"):
        assert read_recipe(plain) is None
        assert not caplog.records
        assert read_recipe(invalid) is None
    assert "missing field(s)" in caplog.text


def test_a_recipe_nested_thousands_deep_is_refused_not_a_crash() -> None:
    with pytest.raises(ValueError, match="nests too deeply"):
        Recipe.from_json("[" * 100_000)  # the JSON decoder recursed once per level: RecursionError


def test_read_recipe_of_a_non_png_is_none(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    Image.new("RGB", (4, 4)).save(path, format="JPEG")
    assert read_recipe(path) is None
    with pytest.raises(FileNotFoundError):
        read_recipe(tmp_path / "missing.png")
