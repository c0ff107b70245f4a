"""What a model file is, told from its tensor names and shapes alone (the names each tool's file layout uses), and
which base family it was made for."""

from __future__ import annotations

import re

import pipelines.models.kinds as kinds
from pipelines.models.header import Header

LORA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_transformer_")
LORA_PARTS = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.",
              ".hada_w1_a", ".lokr_w1", ".oft_blocks", ".oft_diag", ".glora_")  # the last four: LyCORIS
EMBEDDING_KEYS = ("emb_params", "string_to_param", "clip_l", "clip_g")
CONTROLNET_PARTS = ("input_hint_block.", "controlnet_cond_embedding.")
_RRDB = re.compile(r"^(?:body\.\d+\.rdb1\.|model\.1\.sub\.\d+\.RDB1\.)")
_SRVGG = re.compile(r"^body\.\d+\.(?:weight|bias)$")
_CROSS_ATTENTION_KEY = re.compile(r"attn2[._]to_k(?:\.weight|\.lora_down\.weight|\.lora_A\.weight|\.hada_w1_b)$")


def kind_of(header: Header) -> str:
    """The kind the tensors say, or kinds.OTHER when they match no known layout."""
    names = header.shapes
    if header.has_prefix(*LORA_PREFIXES) or header.has_part(*LORA_PARTS):
        return kinds.LORA
    if any(key in names for key in EMBEDDING_KEYS):
        return kinds.EMBEDDING
    if header.has_part(*CONTROLNET_PARTS):
        return kinds.CONTROLNET
    if header.has_prefix("model.diffusion_model."):
        return kinds.CHECKPOINT
    if "encoder.conv_in.weight" in names and "decoder.conv_out.weight" in names:
        return kinds.VAE
    if any(_RRDB.match(name) for name in names):
        return kinds.UPSCALER
    if len(names) >= 4 and all(_SRVGG.match(name) for name in names):
        return kinds.UPSCALER
    return kinds.OTHER


def family_of(header: Header, kind: str) -> str:
    """The base family the tensors (then kohya's metadata) say, or "" when they do not say."""
    names = header.shapes
    if kind == kinds.CHECKPOINT:
        if header.has_prefix("conditioner.embedders.1."):
            return kinds.SDXL
        if header.has_prefix("cond_stage_model.model."):
            return kinds.SD2
        if header.has_prefix("cond_stage_model.transformer."):
            return kinds.SD1
    if kind == kinds.EMBEDDING:
        if "clip_g" in names:
            return kinds.SDXL
        vectors = names.get("emb_params") or names.get("string_to_param") or ()
        return kinds.CONTEXT_WIDTH.get(vectors[-1], "") if vectors else ""
    if kind == kinds.LORA:
        if header.has_prefix("lora_te2_"):
            return kinds.SDXL
        if header.metadata.get("ss_v2", "").lower() == "true":
            return kinds.SD2
        labelled = kinds.family_from_label(header.metadata.get("ss_base_model_version", ""))
        if labelled:
            return labelled
    if kind in (kinds.CHECKPOINT, kinds.LORA, kinds.CONTROLNET):
        return _family_from_cross_attention(header)
    return ""


def _family_from_cross_attention(header: Header) -> str:
    for name, shape in header.shapes.items():
        if _CROSS_ATTENTION_KEY.search(name) and len(shape) == 2:
            return kinds.CONTEXT_WIDTH.get(shape[1], "")
    return ""


UPSCALER_ABOUT = {"ESRGAN": "ESRGAN (RRDB network)", "Real-ESRGAN compact": "Real-ESRGAN compact (SRVGG network)"}


def upscaler_architecture(header: Header) -> str:
    """The network of an upscaler, as A1111 names it: "ESRGAN" (RRDB) or "Real-ESRGAN compact" (SRVGG)."""
    return "ESRGAN" if any(_RRDB.match(name) for name in header.shapes) else "Real-ESRGAN compact"
