"""Build the CLIP tokenizer files (vocab.json, merges.txt, configs) from OpenAI's BPE merge list.

Stable Diffusion 1.x and SDXL tokenize prompts with OpenAI CLIP's byte-level BPE (Radford et al. 2021,
"Learning Transferable Visual Models From Natural Language Supervision"). Its only source file is
`bpe_simple_vocab_16e6.txt.gz` (MIT, shipped by OpenAI CLIP and by open_clip); the `vocab.json`/`merges.txt`
pair that transformers' `CLIPTokenizer` reads is a deterministic function of it, built here the same way CLIP's
`SimpleTokenizer` builds its encoder:

1. 256 base symbols: every byte mapped to a printable unicode character (`bytes_to_unicode`),
2. the same 256 symbols with the end-of-word marker `</w>`,
3. one token per merge, in rank order, for the first 48,894 merges of the file,
4. `<|startoftext|>` and `<|endoftext|>`  → 49,408 ids, so id 49406 starts and 49407 ends every prompt.

`python -m pipelines.clip_vocab [--bpe FILE]` regenerates the tokenizer folders under `assets/configs/`.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import tempfile
import zipfile
from pathlib import Path

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
# OpenAI's SimpleTokenizer keeps `merges[1:49152 - 256 - 2 + 1]` (line 0 of the file is a version header):
# 512 byte tokens + 48,894 merges + 2 special tokens = 49,408 ids.
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 256 * 2 + NUM_MERGES + 2  # 49,408, the `vocab_size` of every CLIP text encoder config
MODEL_MAX_LENGTH = 77  # CLIP's context length; SD pads/truncates every prompt to it
BPE_FILE_NAME = "bpe_simple_vocab_16e6.txt.gz"
WHEEL_MEMBER = f"open_clip/{BPE_FILE_NAME}"
REPO_ROOT = Path(__file__).resolve().parent.parent
# (folder under assets/configs, pad token). SDXL's second tokenizer (OpenCLIP bigG) pads with "!" (id 0) because
# open_clip pads with 0, not with <|endoftext|> as OpenAI CLIP does.
TOKENIZER_FOLDERS: tuple[tuple[str, str], ...] = (
    ("sd15/tokenizer", EOS_TOKEN),
    ("sdxl/tokenizer", EOS_TOKEN),
    ("sdxl/tokenizer_2", "!"),
)


def bytes_to_unicode() -> dict[int, str]:
    """Byte → printable character, so BPE never sees whitespace or control characters.

    Printable Latin-1 bytes map to themselves; the other 68 bytes map, in byte order, to code points 256, 257, ….
    The dict is ordered by the printable bytes first, then the remapped ones: that order is the first 256 ids.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = (byte for byte in range(256) if byte not in mapping)
    for offset, byte in enumerate(shifted):
        mapping[byte] = chr(256 + offset)
    return mapping


def read_merges(bpe_gz: Path) -> list[tuple[str, str]]:
    """The first NUM_MERGES merge pairs of a CLIP BPE file, in rank order."""
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    pairs = [line.split() for line in lines[1 : NUM_MERGES + 1]]
    if len(pairs) != NUM_MERGES or any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"{bpe_gz} is not a CLIP BPE file: expected {NUM_MERGES} merge pairs after the header")
    return [(first, second) for first, second in pairs]


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token → id in CLIP's order: bytes, bytes + `</w>`, one token per merge, then the two special tokens."""
    base = list(bytes_to_unicode().values())
    tokens = [*base, *(symbol + "</w>" for symbol in base), *("".join(pair) for pair in merges), BOS_TOKEN, EOS_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError("the merge list produces duplicate tokens; it is not CLIP's BPE file")
    return vocab


def _added_token(content: str) -> dict[str, object]:
    # The serialised form transformers wrote for SD's tokenizer configs: special tokens are "normalized" AddedTokens.
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def tokenizer_configs(pad_token: str) -> tuple[dict[str, object], dict[str, object]]:
    """(tokenizer_config.json, special_tokens_map.json) as in the SD 1.5 / SDXL repos, minus local-path fields."""
    special = {
        "bos_token": _added_token(BOS_TOKEN),
        "eos_token": _added_token(EOS_TOKEN),
        "pad_token": pad_token,
        "unk_token": _added_token(EOS_TOKEN),
    }
    config: dict[str, object] = {
        "add_prefix_space": False,
        "bos_token": {"__type": "AddedToken", **_added_token(BOS_TOKEN)},
        "do_lower_case": True,
        "eos_token": {"__type": "AddedToken", **_added_token(EOS_TOKEN)},
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": {"__type": "AddedToken", **_added_token(EOS_TOKEN)},
    }
    return config, special


def _write_json(path: Path, value: object, *, indent: int | None = 2) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False, separators=(",", ": ") if indent else (",", ":"))
    path.write_text(text + "\n", encoding="utf-8")


def write_clip_tokenizer(folder: Path, bpe_gz: Path, *, pad_token: str = EOS_TOKEN) -> None:
    """Write a transformers `CLIPTokenizer` folder (vocab, merges, configs) derived from `bpe_gz`.

    The output is byte-for-byte deterministic, so regenerating the shipped folders leaves git clean.
    """
    merges = read_merges(bpe_gz)
    vocab = build_vocab(merges)
    if pad_token not in vocab:
        raise ValueError(f"`pad_token` must be a token of the CLIP vocabulary, got {pad_token!r}")
    folder.mkdir(parents=True, exist_ok=True)
    # One line, like the vocab.json transformers writes: the file is 49,408 entries and never read by people.
    _write_json(folder / "vocab.json", vocab, indent=None)
    # transformers' BPE reader skips a first line starting with "#version".
    merge_lines = ["#version: 0.2", *(" ".join(pair) for pair in merges)]
    (folder / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    config, special = tokenizer_configs(pad_token)
    _write_json(folder / "tokenizer_config.json", config)
    _write_json(folder / "special_tokens_map.json", special)


def _installed_bpe_file() -> Path | None:
    # find_spec locates the package without importing it: importing open_clip would pull in torchvision.
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / BPE_FILE_NAME
    return candidate if candidate.is_file() else None


def regenerate(bpe_gz: Path, configs_dir: Path) -> list[Path]:
    """Rewrite every tokenizer folder of the shipped config folders; returns the folders written."""
    written = []
    for relative, pad_token in TOKENIZER_FOLDERS:
        folder = configs_dir / relative
        write_clip_tokenizer(folder, bpe_gz, pad_token=pad_token)
        written.append(folder)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.clip_vocab", description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", type=Path, default=None,
                        help=f"{BPE_FILE_NAME}, or an open_clip_torch wheel containing it "
                             "(default: the file of an installed open_clip package)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "assets" / "configs",
                        help="the configs folder holding sd15/ and sdxl/ (default: %(default)s)")
    args = parser.parse_args(argv)
    source = args.bpe or _installed_bpe_file()
    if source is None:
        parser.error(f"open_clip is not installed; pass --bpe with {BPE_FILE_NAME} or an open_clip_torch wheel")
    if not source.is_file():
        parser.error(f"--bpe: no such file: {source}")
    with tempfile.TemporaryDirectory() as scratch:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as wheel:
                if WHEEL_MEMBER not in wheel.namelist():
                    parser.error(f"--bpe: {source} has no {WHEEL_MEMBER}")
                bpe_gz = Path(scratch) / BPE_FILE_NAME
                bpe_gz.write_bytes(wheel.read(WHEEL_MEMBER))
        else:
            bpe_gz = source
        for folder in regenerate(bpe_gz, args.out):
            print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
