"""The training scripts of the bundled models: the dataset's conversions, and each training loop for a few steps on
a tiny synthetic set — it runs, checkpoints, resumes, and writes a folder the studio's pipelines load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from pipelines.train.dataset import caption_of_clipart, caption_of_emoji, fit
from tests.support.model_trees import scanned

pytestmark = pytest.mark.slow

SVG = """<svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <metadata><rdf:RDF><cc:Work rdf:about="">
  <dc:title>Clipart by Nicu Buculei - Red_Apple</dc:title>
  <dc:subject><rdf:Bag><rdf:li>fruit</rdf:li><rdf:li>food</rdf:li><rdf:li>0xa0f5150</rdf:li>
   <rdf:li>apple</rdf:li></rdf:Bag></dc:subject>
 </cc:Work></rdf:RDF></metadata></svg>"""


def test_fit_centres_any_picture_on_white_at_64() -> None:
    picture = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    ImageDraw.Draw(picture).rectangle((50, 25, 149, 74), fill=(255, 0, 0, 255))  # 100 × 50 red, margins transparent
    fitted = np.asarray(fit(picture))
    assert fitted.shape == (64, 64, 3)
    assert (fitted[0, 0] == 255).all()  # padding is white
    assert tuple(fitted[32, 32]) == (255, 0, 0)
    assert (fitted[15, 32] == 255).all() and tuple(fitted[17, 32]) == (255, 0, 0)  # 64 × 32, centred


def test_captions_from_emoji_names_and_clipart_metadata(tmp_path: Path) -> None:
    assert caption_of_emoji(":woman_health_worker_medium_skin_tone:") == "woman health worker medium skin tone"
    svg = tmp_path / "apple.svg"
    svg.write_text(SVG)
    assert caption_of_clipart(svg) == "red apple: fruit, food"
    assert caption_of_clipart(tmp_path / "missing.svg") == ""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 coloured discs and squares with captions, in the layout `pipelines.train.dataset` writes."""
    folder = tmp_path_factory.mktemp("dataset")
    rng = np.random.default_rng(0)
    images, captions = [], []
    for i in range(40):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        picture = Image.new("RGB", (64, 64), "white")
        shape = "disc" if i % 2 else "square"
        (ImageDraw.Draw(picture).ellipse if i % 2 else ImageDraw.Draw(picture).rectangle)((12, 12, 52, 52), colour)
        images.append(np.asarray(picture))
        captions.append({"caption": f"a {shape}", "source": "emoji"})
    np.save(folder / "images.npy", np.stack(images))
    (folder / "captions.json").write_text(json.dumps(captions))
    (folder / "split.json").write_text(json.dumps({"train": list(range(36)), "validation": list(range(36, 40))}))
    return folder


def train(module: str, monkeypatch: pytest.MonkeyPatch, *args: object) -> None:
    import importlib

    monkeypatch.setattr(sys, "argv", [module, *map(str, args)])
    importlib.import_module(f"pipelines.train.{module}").main()


@pytest.fixture(scope="module")
def latent_vae(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, work folder) of a latent autoencoder trained 2 steps, then resumed to 3."""
    root = tmp_path_factory.mktemp("latent_vae")
    with pytest.MonkeyPatch.context() as monkeypatch:
        common = ("--data", dataset, "--work", root / "work", "--out", root / "model", "--batch", 4)
        train("latent_vae", monkeypatch, *common, "--steps", 2)
        train("latent_vae", monkeypatch, *common, "--steps", 3)
    return root / "model", root / "work"


def test_the_latent_autoencoder_trains_resumes_and_loads_in_the_vae_tab(latent_vae: tuple[Path, Path]) -> None:
    from pipelines.vae import VaeParams, VaePipeline

    model, work = latent_vae
    facts = json.loads((model / "training.json").read_text())
    assert facts["steps"] == 3 and facts["scaling_factor"] > 0  # resumed from step 2, not restarted
    assert (work / "checkpoint.pt").is_file() and (model / "reconstructions.png").is_file()
    card = (model / "MODEL_CARD.md").read_text()
    assert "| val_psnr_db |" in card and "![validation images" in card and "## Known limits" in card
    entry = next(e for e in VaePipeline.list_models(scanned(model.parent)) if e.id == model.name)
    assert entry.licence.startswith("Apache-2.0") and "16×16×4" in entry.description  # the card's front matter
    pipe = VaePipeline.load(str(model), device="cpu")
    assert pipe.factor == 4 and pipe.latent_channels == 4
    image = pipe(VaeParams.from_dict({"num_images": 1}), seed=0).images[0]
    assert image.size == (64, 64)


def test_the_sampling_vae_reports_its_elbo_and_prior_samples(dataset: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.vae import VaeParams, VaePipeline

    train("sampling_vae", monkeypatch, "--data", dataset, "--work", tmp_path / "work", "--out", tmp_path / "model",
          "--steps", 2, "--batch", 4)
    facts = json.loads((tmp_path / "model" / "training.json").read_text())
    assert facts["neg_elbo_nats"] > facts["kl_nats"] > 0 and facts["bits_per_dim"] > 0
    with Image.open(tmp_path / "model" / "prior_samples.png") as grid:
        assert grid.size == (8 * 64 + 14, 8 * 64 + 14)
    pipe = VaePipeline.load(str(tmp_path / "model"), device="cpu")
    assert pipe.factor == 16 and pipe.latent_channels == 8
    # the tab samples the fitted mixture at the native size, reproducibly by seed
    assert pipe.prior is not None and pipe.prior.dim == 8 * 4 * 4
    assert facts["prior_components"] == pipe.prior.components
    params = VaeParams.from_dict({"num_images": 2, "temperature": 0.7})
    first, again = pipe(params, seed=5), pipe(params, seed=5)
    assert first.info["prior"].startswith("fitted mixture") and first.images[0].tobytes() == again.images[0].tobytes()
    assert pipe(VaeParams.from_dict({"width": 128, "height": 128}), seed=5).info["prior"] == "N(0, I)"


def test_the_gan_trains_and_loads_in_the_gan_tab(dataset: Path, latent_vae: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.gan import GanParams, GanPipeline

    train("gan", monkeypatch, "--data", dataset, "--work", tmp_path / "work", "--out", tmp_path / "model",
          "--steps", 2, "--batch", 4, "--vae", latent_vae[0])
    facts = json.loads((tmp_path / "model" / "training.json").read_text())
    assert facts["steps"] == 2 and facts["diversity_real"] > 0 and facts["diversity_samples"] > 0
    pipe = GanPipeline.load(str(tmp_path / "model"), device="cpu")
    assert pipe(GanParams.from_dict({"num_images": 1}), seed=1).images[0].size == (64, 64)


def test_the_text_to_image_model_trains_and_exports(dataset: Path, latent_vae: tuple[Path, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    train("text_to_image", monkeypatch, "--data", dataset, "--work", tmp_path / "work", "--out", tmp_path / "model",
          "--steps", 2, "--batch", 4, "--grid-steps", 2, "--vae", latent_vae[0])
    out = tmp_path / "model"
    assert json.loads((out / "training.json").read_text())["steps"] == 2
    assert {p.name for p in out.iterdir()} >= {"unet", "vae", "scheduler", "tokenizer", "prompts.png"}
    with Image.open(out / "prompts.png") as grid:
        assert grid.size == (6 * 64 + 5 * 2, 4 * 64 + 3 * 2)  # 24 prompts, 6 per row

    # the text-to-image tab's own loader reads it like any diffusers folder, text encoder from its package
    from pipelines.text_to_image import TextToImageParams, TextToImagePipeline

    pipe = TextToImagePipeline.load(str(out), device="cpu")
    assert pipe.family == "sentence" and pipe.native_size() == 64
    params = TextToImageParams.from_dict({"prompt": "a red apple", "num_steps": 2, "clip_skip": 2})
    result = pipe(params, seed=3)
    assert result.images[0].size == (64, 64) and result.info["size"] == "64x64"
    assert result.info["warnings"] == ["clip skip applies to CLIP text encoders only; this model ignored it"]

    # the work folder lost (another machine): the same command continues from the export, not from scratch
    from diffusers import UNet2DConditionModel

    exported = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    train("text_to_image", monkeypatch, "--data", dataset, "--work", tmp_path / "other-work", "--out", out,
          "--steps", 3, "--batch", 4, "--grid-steps", 2, "--vae", latent_vae[0])
    facts = json.loads((out / "training.json").read_text())
    assert facts["steps"] == 3 and facts["warm_starts"] == 1  # one more step on top of the export's two
    changed = UNet2DConditionModel.from_pretrained(out / "unet").state_dict()
    assert any(not torch.equal(exported[k], changed[k]) for k in exported)
    # resuming the warm-started run from its own work folder still counts the warm start
    train("text_to_image", monkeypatch, "--data", dataset, "--work", tmp_path / "other-work", "--out", out,
          "--steps", 4, "--batch", 4, "--grid-steps", 2, "--vae", latent_vae[0])
    facts = json.loads((out / "training.json").read_text())
    assert facts["steps"] == 4 and facts["warm_starts"] == 1


def test_the_text_to_image_average_warms_up_instead_of_keeping_the_random_start() -> None:
    from pipelines.train.text_to_image import EMA_DECAY, ema_decay

    assert ema_decay(0) == 0.1 and ema_decay(90) == 0.91 and ema_decay(100_000) == EMA_DECAY
    kept = 1.0
    for step in range(900):
        kept *= ema_decay(step)
    assert kept < 1e-3  # what is left of the initial weights after 900 steps (a fixed 0.999 would keep 41%)


def test_retraining_keeps_the_models_other_settings(tmp_path) -> None:
    from pipelines.train.text_to_image import write_index

    (tmp_path / "atelier.json").write_text(json.dumps({"defaults": {"width": 64}, "packaged": {}}))
    write_index(tmp_path, encoder=object(), tokenizer=object())
    settings = json.loads((tmp_path / "atelier.json").read_text())
    assert settings["defaults"] == {"width": 64} and settings["packaged"]["text_encoder"].endswith("/model")
