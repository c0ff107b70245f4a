"""The training set of the bundled models: colour emoji and public-domain clip art, 64×64 RGB on white, captioned.

Sources (both Debian packages, installed by this script when missing; never at run time):
- `fonts-noto-color-emoji` (OFL-1.1): every fully-qualified emoji of the PyPI `emoji` package is drawn with
  Pillow at 109 px, the font's only bitmap size (raqm shaping joins ZWJ sequences, skin tones and flags); an
  emoji the font cannot join (it falls apart into several glyphs) and exact duplicates are dropped. Caption:
  the emoji's CLDR name ("woman health worker medium skin tone").
- `openclipart-png` + `openclipart-svg` (public domain): every PNG, captioned with its SVG's `<dc:title>` and
  `<dc:subject>` keywords. The `computer` and `buttons` folders (interface icons, a quarter of the set, nearly
  all alike) are left out.
Images are composited on white, fitted into 64×64 keeping their aspect ratio, and split 95/5 into train and
validation by a fixed seed.

Run: `python -m pipelines.train.dataset [--out DIR]` (a few minutes). Writes `images.npy` (N, 64, 64, 3) uint8,
`captions.json`, `split.json` and `stats.json` (counts and licences) to DIR, by default
`<user cache>/atelier/datasets/emoji-clipart-64`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
from PIL import Image, ImageDraw, ImageFont, features

SIDE = 64
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_SIZE = 109  # the bitmap strike of Noto Color Emoji; other sizes fail to load
CLIPART = Path("/usr/share/openclipart")
SKIPPED_FOLDERS = ("computer", "buttons")
MAX_CLIPART_PIXELS = 16_000_000
DEBIAN_PACKAGES = ("fonts-noto-color-emoji", "openclipart-png", "openclipart-svg", "libraqm0")
VALIDATION_SHARE = 0.05
SPLIT_SEED = 0
NAMESPACES = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}
LICENCES = {"emoji": "OFL-1.1 (Noto Color Emoji font); names from Unicode CLDR via the `emoji` package (BSD)",
            "clipart": "public domain (Openclipart)"}


def default_dir() -> Path:
    return Path(platformdirs.user_cache_dir("atelier", appauthor=False)) / "datasets" / "emoji-clipart-64"


@dataclass(frozen=True)
class Sample:
    image: Image.Image
    caption: str
    source: str  # "emoji" | "clipart"


def ensure_sources() -> None:
    """Install the Debian packages when their files are missing (needs root); otherwise say what to run."""
    if EMOJI_FONT.is_file() and (CLIPART / "png").is_dir() and (CLIPART / "svg").is_dir():
        return
    command = ["apt-get", "install", "-y", *DEBIAN_PACKAGES]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"the training data is missing; install it with: sudo {' '.join(command)}")
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(command, check=True)


def fit(image: Image.Image) -> Image.Image:
    """Any image → SIDE×SIDE RGB: transparency onto white, longest side to SIDE, centred."""
    rgba = image.convert("RGBA")
    box = rgba.getbbox()  # trim empty (fully transparent) margins
    if box:
        rgba = rgba.crop(box)
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    scale = SIDE / max(flat.size)
    size = (max(1, round(flat.width * scale)), max(1, round(flat.height * scale)))
    flat = flat.resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (SIDE, SIDE), "white")
    canvas.paste(flat, ((SIDE - size[0]) // 2, (SIDE - size[1]) // 2))
    return canvas


def emoji_samples() -> list[Sample]:
    import emoji

    if not features.check("raqm"):
        sys.exit("Pillow was built without raqm: ZWJ emoji would not join (install libraqm0)")
    font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_SIZE, layout_engine=ImageFont.Layout.RAQM)
    samples = []
    for text, data in emoji.EMOJI_DATA.items():
        if data.get("status") != emoji.STATUS["fully_qualified"]:
            continue
        canvas = Image.new("RGBA", (EMOJI_SIZE * 3, EMOJI_SIZE * 2), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((4, 4), text, font=font, embedded_color=True)
        box = canvas.getbbox()
        # one glyph is about square; a sequence the font cannot join renders as a row of glyphs
        if box is None or (box[2] - box[0]) > 1.4 * (box[3] - box[1]):
            continue
        samples.append(Sample(fit(canvas), caption_of_emoji(data["en"]), "emoji"))
    return samples


def caption_of_emoji(name: str) -> str:
    """':woman_health_worker_medium_skin_tone:' → 'woman health worker medium skin tone'."""
    return re.sub(r"\s+", " ", name.strip(":").replace("_", " ")).strip()


def clipart_samples() -> list[Sample]:
    samples = []
    for png in sorted((CLIPART / "png").rglob("*.png")):
        relative = png.relative_to(CLIPART / "png")
        if relative.parts[0] in SKIPPED_FOLDERS:
            continue
        caption = caption_of_clipart(CLIPART / "svg" / relative.with_suffix(".svg"))
        if not caption:
            continue
        try:
            with Image.open(png) as image:
                if image.width * image.height > MAX_CLIPART_PIXELS:
                    continue  # a handful are posters of hundreds of megapixels: slow to decode, no use at 64 px
                samples.append(Sample(fit(image), caption, "clipart"))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # a few files in the package are damaged
    return samples


def caption_of_clipart(svg: Path) -> str:
    """The work's title and keywords from the SVG's RDF metadata ('chemistry flask: chemistry, science')."""
    try:
        root = ElementTree.parse(svg).getroot()
    except (OSError, ElementTree.ParseError):
        return ""
    # Creative Commons changed its namespace over the years; the files use both
    work = next((element for element in root.iter() if str(element.tag).endswith("}Work")), None)
    if work is None:
        return ""
    title = _words(work.findtext("dc:title", "", NAMESPACES) or "")
    title = re.sub(r"^clip ?art by [^-]+ - ", "", title)  # "clipart by nicu buculei - book 01" → "book 01"
    keywords = [_words(li.text) for li in work.findall("dc:subject/rdf:Bag/rdf:li", NAMESPACES) if li.text]
    # keywords that repeat the title, or are catalogue codes ("0xa0f5150"), say nothing about the picture
    words = [k for k in dict.fromkeys(keywords) if k and k not in title and not re.search(r"\d", k)][:6]
    return f"{title}: {', '.join(words)}" if title and words else title


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("_", " ")).strip().lower()


def build(out: Path) -> dict[str, object]:
    ensure_sources()
    samples, seen = [], set()
    for sample in [*emoji_samples(), *clipart_samples()]:
        digest = hashlib.sha1(sample.image.tobytes()).hexdigest()
        if digest not in seen:  # exact duplicates (same glyph under two names, the same clip art twice)
            seen.add(digest)
            samples.append(sample)
    images = np.stack([np.asarray(s.image, dtype=np.uint8) for s in samples])  # (N, 64, 64, 3)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(samples))
    cut = round(len(samples) * VALIDATION_SHARE)
    split = {"validation": sorted(order[:cut].tolist()), "train": sorted(order[cut:].tolist())}
    counts = {source: sum(s.source == source for s in samples) for source in LICENCES}
    stats = {"images": len(samples), "by_source": counts, "train": len(split["train"]),
             "validation": len(split["validation"]), "side": SIDE, "licences": LICENCES}
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", images)
    (out / "captions.json").write_text(json.dumps([{"caption": s.caption, "source": s.source} for s in samples],
                                                  ensure_ascii=False, indent=0), encoding="utf-8")
    (out / "split.json").write_text(json.dumps(split), encoding="utf-8")
    (out / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=default_dir(), help="where to write the dataset cache")
    args = parser.parse_args()
    stats = build(args.out)
    print(json.dumps(stats, indent=2))  # noqa: T201 -- a CLI report
    print(f"written to {args.out}")  # noqa: T201


if __name__ == "__main__":
    main()
