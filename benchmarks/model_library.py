"""The model library with 2,000 files in an A1111 layout: a cold scan, a warm rescan and a rescan while the
background hasher reads a gigabyte, against a bare walk of the same tree.

The library is synthetic but real where the scan looks: each file is a safetensors file of a few KB whose header
holds the tensor names and shapes of its kind (kohya LoRAs with training metadata, LDM checkpoints, embeddings,
ControlNets, VAEs, ESRGAN upscalers), in A1111's folders (LoRAs in subfolders of 50), half of them with a preview
picture and a quarter with an A1111 `.json` sidecar. Four of the checkpoints are 256 MB (sparse files: a real
header, then zeros), so hashing takes seconds while the listing must not wait for it.

Baseline (same run): `os.walk` with a `stat` of every file, the least any scan of the tree does. Targets: a warm
rescan ≤ 0.5 s; a cold start lists every file before its hashes are done; a rescan while hashing ≤ 0.5 s.

Run: `python -m benchmarks.model_library --quick` (5 runs per figure; the default) or `--full` (15 runs);
writes benchmarks/results/model_library.md.
"""

from __future__ import annotations

import json
import os
import platform
import struct
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, cpu_flags, parse_quick, section_report, write_report
from benchmarks.common import median_seconds as seconds
from pipelines.models import Library
from pipelines.models.hashes import file_key

FILES = 2_000
BIG_FILES, BIG_BYTES = 4, 256 * 1024 * 1024
TARGET_WARM_S = 0.5
# kind folder → (files, tensor names and shapes of one file of that kind)
LAYOUT: dict[str, tuple[int, dict[str, list[int]]]] = {
    "Stable-diffusion": (300, {**{f"model.diffusion_model.input_blocks.{i}.1.transformer_blocks.0.attn2.to_k.weight":
                                  [320, 768] for i in range(12)},
                               "cond_stage_model.transformer.text_model.embeddings.position_ids": [1, 77]}),
    "Lora": (1_000, {f"lora_unet_down_blocks_{i}_attentions_0_transformer_blocks_0_attn2_to_k.lora_{p}.weight":
                     [8, 768] for i in range(20) for p in ("down", "up")}),
    "../embeddings": (300, {"emb_params": [4, 768]}),
    "VAE": (150, {f"{part}.{i}.weight": [8, 8, 3, 3] for part in ("encoder.down", "decoder.up") for i in range(10)}
            | {"encoder.conv_in.weight": [8, 3, 3, 3], "decoder.conv_out.weight": [3, 8, 3, 3]}),
    "ControlNet": (150, {f"control_model.input_hint_block.{i}.weight": [16, 16, 3, 3] for i in range(14)}),
    "ESRGAN": (100, {f"body.{i}.rdb{j}.conv1.weight": [32, 32, 3, 3] for i in range(8) for j in (1, 2, 3)}
               | {"conv_first.weight": [32, 3, 3, 3]}),
}
TAGS = json.dumps({"10_art": {f"tag{i}": i for i in range(60)}})
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS\xde\x00\x00"
       b"\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00\x00\x00IEND\xaeB`\x82")


def safetensors_bytes(tensors: dict[str, list[int]], metadata: dict[str, str]) -> bytes:
    """A safetensors header with these names and shapes, and 4 bytes of data for each tensor: the scan reads headers
    only, and checks the byte ranges against the file's size, not against the shapes."""
    header: dict[str, object] = {"__metadata__": metadata}
    for index, (name, shape) in enumerate(tensors.items()):
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [4 * index, 4 * index + 4]}
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(4 * len(tensors))


def build(root: Path) -> Path:
    webui = root / "webui"
    count = 0
    for folder, (files, tensors) in LAYOUT.items():
        metadata = {"ss_tag_frequency": TAGS, "ss_base_model_version": "sd_v1"} if folder == "Lora" else {}
        body = safetensors_bytes(tensors, metadata)
        for n in range(files):
            sub = f"set{n // 50}/" if folder == "Lora" else ""
            path = webui / "models" / folder / f"{sub}model_{n:04d}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            if n % 2 == 0:
                path.with_suffix(".preview.png").write_bytes(PNG)
            if n % 4 == 0:
                path.with_suffix(".json").write_text(json.dumps({"description": f"model {n}", "sd version": "SD1",
                                                                 "activation text": "a, b"}))
            count += 1
    for n in range(BIG_FILES):
        with (webui / "models" / "Stable-diffusion" / f"model_{n:04d}.safetensors").open("r+b") as f:
            f.truncate(BIG_BYTES)  # the header stays; the rest reads as zeros, as the hasher must read it all
    assert count == FILES
    return webui


def bare_walk(root: Path) -> int:
    found = 0
    for folder, _, names in os.walk(root):
        for name in names:
            os.stat(os.path.join(folder, name))
            found += 1
    return found


def measure(quick: bool) -> tuple[list[Row], str]:
    runs = 5 if quick else 15
    with tempfile.TemporaryDirectory() as tmp:
        webui = build(Path(tmp))
        walk_s = seconds(lambda: bare_walk(webui), runs)
        db = Path(tmp) / "hashes.sqlite3"
        started = time.perf_counter()
        library = Library([webui], hash_db=db, bundled=None)
        library.scan()
        listed_s = time.perf_counter() - started
        listed = len(library.files())
        hashing_at_list = library.hashing
        during = seconds(library.scan, runs)  # the hasher is reading the big files meanwhile
        while library.hashing:
            time.sleep(0.05)
        hashed_s = time.perf_counter() - started
        warm = seconds(library.scan, runs)
        big = [f for f in library.files() if f.size >= BIG_BYTES]
        assert len(big) == BIG_FILES and all(library.sha256(f) for f in big)
        restarted = Library([webui], hash_db=db, bundled=None)
        restarted.scan()
        assert restarted.hashing == 0 and restarted.sha256(big[0]) == library.sha256(big[0])
        library.close()
        assert file_key(big[0].path)[1] == BIG_BYTES
    rows = [
        Row(f"model library: warm rescan of {FILES:,} files (A1111 layout)",
            f"os.walk + stat ({walk_s * 1000:.0f} ms)",
            f"{warm * 1000:.0f} ms ({warm / walk_s:.1f}× the bare walk)", f"≤ {TARGET_WARM_S} s",
            warm <= TARGET_WARM_S, walk_s / warm, "headers of unchanged files are not read again"),
        Row("model library: cold start lists every file before hashing ends", "—",
            f"{listed:,} files listed at {listed_s:.2f} s, {hashing_at_list} still to hash; hashes done at "
            f"{hashed_s:.2f} s", "listed first", listed == FILES and hashing_at_list > 0 and listed_s < hashed_s),
        Row("model library: rescan while the hasher reads 1 GB", f"idle warm rescan ({warm * 1000:.0f} ms)",
            f"{during * 1000:.0f} ms", f"≤ {TARGET_WARM_S} s", during <= TARGET_WARM_S, warm / during,
            "hashing runs in its own thread; hashlib releases the GIL while it reads"),
    ]
    about = (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"{cpu_flags()}. Medians of {runs} runs; the OS file cache is warm (the tree was just written).")
    return rows, about


def rows(quick: bool) -> list[Row]:
    measured, about = measure(quick)
    write_report("model_library", section_report(f"Model library with {FILES:,} files", about, measured))
    return measured


def main() -> None:
    rows(parse_quick(__doc__, "5 runs per figure", "15 runs per figure"))


if __name__ == "__main__":
    main()
