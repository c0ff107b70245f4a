"""Save diffusers Stable Diffusion components in the original single-file layout (CompVis LDM / A1111).

Civitai and A1111 checkpoints keep the whole model in one state dict whose keys follow the CompVis
latent-diffusion code (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models"):

    model.diffusion_model.*          the UNet (`openaimodel.UNetModel`: input_blocks / middle_block / output_blocks)
    first_stage_model.*              the KL autoencoder (`encoder.down.N.block.M`, `decoder.up.N` numbered bottom-up)
    cond_stage_model.transformer.*   SD 1.x: the CLIP ViT-L/14 text model, as transformers 4.x named it
    conditioner.embedders.0.transformer.*   SDXL: the same CLIP ViT-L/14
    conditioner.embedders.1.model.*         SDXL: OpenCLIP ViT-bigG/14 in open_clip's own names (fused q/k/v)

This is the inverse of what diffusers' `loaders/single_file_utils.py` does (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`), so tests can build
tiny components, write them as a `.safetensors` file shaped like a real checkpoint, and check that
`from_single_file` gives back the same weights.
"""

from __future__ import annotations

import re

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# diffusers module name → LDM module name; the parameter suffix (".weight", ".bias") is kept.
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
    # SDXL's size/crop conditioning MLP; LDM builds it as label_emb = Sequential(Sequential(Linear, SiLU, Linear)).
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
}
# LDM's ResBlock wraps its layers in nn.Sequential: in_layers = (GroupNorm, SiLU, Conv), out_layers =
# (GroupNorm, SiLU, Dropout, Conv), emb_layers = (SiLU, Linear); hence the indices.
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_VAE_TOP_LEVEL = {
    "conv_in": "conv_in",
    "conv_out": "conv_out",
    "conv_norm_out": "norm_out",
}
# The VAE's single-head mid-block attention: diffusers' `Attention` vs LDM's `AttnBlock` (1×1 convolutions).
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_module(rest: str, table: dict[str, str], what: str) -> str:
    module, _, param = rest.rpartition(".")
    if module not in table:
        raise KeyError(f"no LDM name for {what} layer `{rest}`")
    return f"{table[module]}.{param}"


def unet_key_to_ldm(key: str, unet: UNet2DConditionModel) -> str:
    """The LDM name of one diffusers UNet parameter (SD 1.x or SDXL; no class embeddings)."""
    per_level = unet.config.layers_per_block + 1  # LDM input levels: L resnets + 1 downsampler; output: L + 1 resnets
    module, _, param = key.rpartition(".")
    if module in _UNET_TOP_LEVEL:
        return f"{_UNET_TOP_LEVEL[module]}.{param}"
    if match := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = 1 + level * per_level + index  # input_blocks.0 is conv_in
        if kind == "resnets":
            return f"input_blocks.{block}.0.{_rename_module(rest, _UNET_RESNET, 'resnet')}"
        return f"input_blocks.{block}.1.{rest}"  # SpatialTransformer: same inner names as Transformer2DModel
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(match[1]) + 1) * per_level}.0.op.{match[2]}"
    if match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(match[1])}.{_rename_module(match[2], _UNET_RESNET, 'resnet')}"
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{match[1]}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        level, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        block = level * per_level + index
        if kind == "resnets":
            return f"output_blocks.{block}.0.{_rename_module(rest, _UNET_RESNET, 'resnet')}"
        return f"output_blocks.{block}.1.{rest}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        level = int(match[1])
        # The upsampler closes the level's last output block, after the attention when the level has one.
        has_attention = hasattr(unet.up_blocks[level], "attentions")
        return f"output_blocks.{level * per_level + per_level - 1}.{2 if has_attention else 1}.conv.{match[2]}"
    raise KeyError(f"no LDM name for UNet parameter `{key}` (only SD 1.x and SDXL UNets are supported)")


def vae_key_to_ldm(key: str, vae: AutoencoderKL) -> str:
    """The LDM name of one diffusers AutoencoderKL parameter."""
    num_levels = len(vae.config.block_out_channels)
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    part, _, rest = key.partition(".")  # "encoder" / "decoder"
    module, _, param = rest.rpartition(".")
    if module in _VAE_TOP_LEVEL:
        return f"{part}.{_VAE_TOP_LEVEL[module]}.{param}"
    if match := re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest):
        direction, level, index, tail = match[1], int(match[2]), int(match[3]), match[4]
        # LDM indexes `decoder.up` by resolution (up.0 is full size and runs last); diffusers in running order.
        ldm_level = level if direction == "down" else num_levels - 1 - level
        return f"{part}.{direction}.{ldm_level}.block.{index}.{tail.replace('conv_shortcut', 'nin_shortcut')}"
    if match := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest):
        return f"{part}.down.{match[1]}.downsample.conv.{match[2]}"
    if match := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest):
        return f"{part}.up.{num_levels - 1 - int(match[1])}.upsample.conv.{match[2]}"
    if match := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest):
        return f"{part}.mid.block_{int(match[1]) + 1}.{match[2]}"
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest):
        return f"{part}.mid.attn_1.{_rename_module(match[1], _VAE_ATTENTION, 'VAE attention')}"
    raise KeyError(f"no LDM name for VAE parameter `{key}`")


def _vae_tensor_to_ldm(ldm_key: str, tensor: torch.Tensor) -> torch.Tensor:
    # AttnBlock's q/k/v/proj_out are Conv2d(C, C, 1): 4-D weights (C, C, 1, 1) where diffusers has Linear (C, C).
    if re.search(r"mid\.attn_1\.(q|k|v|proj_out)\.weight$", ldm_key):
        return tensor[:, :, None, None]
    return tensor


def _clip_state_dict(text_encoder: CLIPTextModel, prefix: str) -> dict[str, torch.Tensor]:
    state = {}
    for key, tensor in text_encoder.state_dict().items():
        # transformers ≥ 5.6 flattened CLIPTextModel (no `text_model.` level); LDM checkpoints keep the 4.x names.
        name = key if key.startswith("text_model.") else f"text_model.{key}"
        state[prefix + name] = tensor
    # Real SD checkpoints carry CLIP's position ids (a persistent buffer in transformers 4.x); keep that quirk so
    # the loader is tested against what it meets in the wild.
    positions = text_encoder.config.max_position_embeddings
    state[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    return state


_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _open_clip_state_dict(text_encoder: CLIPTextModelWithProjection, prefix: str) -> dict[str, torch.Tensor]:
    """open_clip's names for a transformers CLIP text model with projection (SDXL's second text encoder)."""
    source = {key.removeprefix("text_model."): tensor for key, tensor in text_encoder.state_dict().items()}
    state = {
        "token_embedding.weight": source.pop("embeddings.token_embedding.weight"),
        "positional_embedding": source.pop("embeddings.position_embedding.weight"),
        "ln_final.weight": source.pop("final_layer_norm.weight"),
        "ln_final.bias": source.pop("final_layer_norm.bias"),
        # open_clip multiplies `x @ text_projection`; nn.Linear stores the transpose.
        "text_projection": source.pop("text_projection.weight").T,
        # open_clip's CLIP temperature, kept by SDXL checkpoints (FrozenOpenCLIPEmbedder2 only drops the visual tower).
        "logit_scale": torch.tensor(100.0).log(),
    }
    for layer in range(text_encoder.config.num_hidden_layers):
        ours, theirs = f"encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for param in ("weight", "bias"):
            # nn.MultiheadAttention keeps q, k and v as one (3 * hidden, hidden) in_proj, in that order.
            fused = [source.pop(f"{ours}self_attn.{name}_proj.{param}") for name in ("q", "k", "v")]
            state[f"{theirs}attn.in_proj_{param}"] = torch.cat(fused)
            for module, ldm_module in _OPEN_CLIP_LAYER.items():
                state[f"{theirs}{ldm_module}.{param}"] = source.pop(f"{ours}{module}.{param}")
    if source:
        raise KeyError(f"no open_clip name for text encoder parameters {sorted(source)}")
    return {prefix + key: tensor for key, tensor in state.items()}


def _unet_and_vae_state_dict(unet: UNet2DConditionModel, vae: AutoencoderKL) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for key, tensor in unet.state_dict().items():
        state[UNET_PREFIX + unet_key_to_ldm(key, unet)] = tensor
    for key, tensor in vae.state_dict().items():
        ldm_key = vae_key_to_ldm(key, vae)
        state[VAE_PREFIX + ldm_key] = _vae_tensor_to_ldm(ldm_key, tensor)
    return state


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses non-contiguous tensors; the 1×1 unsqueeze and the projection transpose are views.
    return {key: tensor.detach().contiguous() for key, tensor in state.items()}


def diffusers_to_ldm_state_dict(
    unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel
) -> dict[str, torch.Tensor]:
    """One state dict with the keys (and tensor shapes) of an original SD 1.x single-file checkpoint."""
    return _contiguous({**_unet_and_vae_state_dict(unet, vae), **_clip_state_dict(text_encoder, CLIP_PREFIX)})


def diffusers_to_ldm_sdxl_state_dict(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
) -> dict[str, torch.Tensor]:
    """One state dict with the keys (and tensor shapes) of an original SDXL base single-file checkpoint."""
    return _contiguous({
        **_unet_and_vae_state_dict(unet, vae),
        **_clip_state_dict(text_encoder, SDXL_CLIP_PREFIX),
        **_open_clip_state_dict(text_encoder_2, SDXL_OPEN_CLIP_PREFIX),
    })
