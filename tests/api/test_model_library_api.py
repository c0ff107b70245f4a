"""The model library over HTTP: A1111's model lists (/sdapi/v1) and the native library routes (/api/v1), on a studio
whose model folders are a real A1111 webui tree and a real ComfyUI tree of tiny model files."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from studio.services import Services
from tests.conftest import make_config, wait_for
from tests.support import model_trees
from tests.ui.serving import serve_http

SD = "sdapi/v1"
API = "api/v1"
LOGIN = ("ann", "apple-pie")
A1111_ROUTES = [("GET", f"{SD}/sd-models"), ("GET", f"{SD}/sd-vae"), ("GET", f"{SD}/loras"),
                ("GET", f"{SD}/embeddings"), ("GET", f"{SD}/upscalers"), ("POST", f"{SD}/refresh-checkpoints"),
                ("POST", f"{SD}/refresh-vae"), ("POST", f"{SD}/refresh-loras"), ("POST", f"{SD}/refresh-embeddings")]
NATIVE_ROUTES = [("GET", f"{API}/library"), ("GET", f"{API}/library/lora/styles/ink.safetensors/preview"),
                 ("POST", f"{API}/models/refresh")]
KIND_FOLDERS = {"Stable-diffusion", "Lora", "LyCORIS", "VAE", "ControlNet", "ESRGAN", "RealESRGAN", "embeddings",
                "checkpoints", "loras", "vae", "controlnet", "upscale_models"}
KINDS = {"checkpoint": "checkpoint", "checkpoint_xl": "checkpoint", "vae": "vae", "controlnet": "controlnet",
         "esrgan": "upscaler", "realesrgan": "upscaler", "upscaler": "upscaler", "embedding": "embedding",
         "embedding_xl": "embedding"}  # a tree's key → the kind listed; the other keys are LoRAs
LIBRARY_FIELDS = {"id", "kind", "name", "rel", "family", "size_bytes", "sha256", "short_hash", "about", "triggers",
                  "has_preview", "preview_url", "note", "problem", "layout", "origin"}


class Served:
    def __init__(self, services: Services, client: httpx.Client, root: Path, webui: dict[str, Path],
                 comfy: dict[str, Path]) -> None:
        self.services, self.client, self.root, self.webui, self.comfy = services, client, root, webui, comfy

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def choose(self, checkpoint: str) -> None:
        response = self.client.post(f"{SD}/options", json={"sd_model_checkpoint": checkpoint})
        assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("library")
    webui = model_trees.a1111_tree(root / "webui")
    comfy = model_trees.comfyui_tree(root / "comfy")
    loras = root / "webui" / "models" / "Lora"
    webui["broken"] = loras / "broken.safetensors"
    webui["broken"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")  # truncated: an unfinished download
    webui["fake_picture"] = model_trees.lora(loras / "fake_picture.safetensors")
    (loras / "fake_picture.png").write_text("<html>not a picture</html>")
    config = make_config(root / "data", models_dirs=(root / "webui", root / "comfy"), plugins=(),
                         auth=":".join(LOGIN))
    with serve_http(config) as (services, url), httpx.Client(base_url=url, auth=LOGIN, timeout=60) as client:
        yield Served(services, client, root, webui, comfy)


def rel_of(path: Path) -> str:
    """The path of a tree's file under its kind's folder, as the library's `rel`."""
    last = max(i for i, part in enumerate(path.parts) if part in KIND_FOLDERS)
    return "/".join(path.parts[last + 1:])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_path(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items if item[key]}


def test_sd_models_lists_every_checkpoint_with_its_hashes_once_hashed(served: Served) -> None:
    checkpoints = {served.webui["checkpoint"]: "dreamy.safetensors",
                   served.webui["checkpoint_xl"]: "xl/bigxl.safetensors",
                   served.comfy["checkpoint"]: "sd2/wide.safetensors"}

    def hashed() -> dict[str, dict[str, Any]] | None:
        listed = by_path(served.get(f"{SD}/sd-models"), "filename")
        return listed if all(listed.get(str(p), {}).get("hash") for p in checkpoints) else None

    listed = wait_for(hashed, 30, "the checkpoints' hashes")
    for path, name in checkpoints.items():
        item = listed[str(path)]
        digest = sha256(path)
        assert item == {"title": f"{name} [{digest[:10]}]", "model_name": name.replace("/", "_")[:-12],
                        "hash": digest[:10], "sha256": digest, "filename": str(path), "config": None}
    # A1111 clients pick a checkpoint by its title, model_name or short hash
    bigxl = listed[str(served.webui["checkpoint_xl"])]
    for chosen in (bigxl["title"], bigxl["model_name"], bigxl["hash"]):
        served.choose(chosen)
        assert served.get(f"{SD}/options")["sd_model_checkpoint"] == bigxl["title"]


def test_vaes_loras_and_upscalers_have_a1111s_shapes(served: Served) -> None:
    vaes = by_path(served.get(f"{SD}/sd-vae"), "filename")
    for path in (served.webui["vae"], served.comfy["vae"]):
        assert vaes[str(path)] == {"model_name": path.name, "filename": str(path)}

    loras = by_path(served.get(f"{SD}/loras"), "path")
    for key, tree in (("lora", served.webui), ("lora_xl", served.webui), ("lycoris", served.webui),
                      ("fake_picture", served.webui), ("lora", served.comfy)):
        item = loras[str(tree[key])]
        assert set(item) == {"name", "alias", "path", "metadata"}
        assert item["name"] == item["alias"] == tree[key].stem
    ink = loras[str(served.webui["lora"])]
    assert ink["metadata"]["ss_base_model_version"] == "sd_v1"
    assert ink["metadata"]["ss_tag_frequency"] == {"10_dataset": {"ink wash": 9, "monochrome": 4}}  # parsed, as A1111
    assert str(served.webui["broken"]) not in loras  # a file A1111 could not load is not listed

    upscalers = served.get(f"{SD}/upscalers")
    assert upscalers[0] == {"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 4}
    listed = by_path(upscalers, "model_path")
    for path, architecture in ((served.webui["esrgan"], "ESRGAN"), (served.webui["realesrgan"], "Real-ESRGAN compact"),
                               (served.comfy["upscaler"], "ESRGAN")):
        assert listed[str(path)] == {"name": path.stem, "model_name": architecture, "model_path": str(path),
                                     "model_url": None, "scale": 4}


def test_embeddings_are_loaded_or_skipped_by_the_callers_checkpoint(served: Served) -> None:
    expected = {"badhands": {"shape": 768, "vectors": 2}, "xl_style": {"shape": 768, "vectors": 2},
                "neg": {"shape": 1024, "vectors": 4}}
    for checkpoint, fitting in (("dreamy.safetensors", "badhands"), ("sd2/wide.safetensors", "neg"),
                                ("xl/bigxl.safetensors", "xl_style")):
        served.choose(checkpoint)
        answer = served.get(f"{SD}/embeddings")
        assert set(answer["loaded"]) == {fitting}, checkpoint
        assert set(answer["skipped"]) == set(expected) - {fitting}
        for name, item in {**answer["loaded"], **answer["skipped"]}.items():
            assert item == {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, **expected[name]}


def test_the_native_library_lists_every_file_with_filters(served: Served) -> None:
    everything = served.get(f"{API}/library")
    assert all(set(item) == LIBRARY_FIELDS for item in everything)
    by_name = {(item["layout"], item["rel"]): item for item in everything}
    for layout, tree in (("a1111", served.webui), ("comfyui", served.comfy)):
        for key, path in tree.items():
            item = by_name[(layout, rel_of(path))]
            assert item["kind"] == KINDS.get(key, "lora") and item["size_bytes"] == path.stat().st_size, key
    broken = by_name[("a1111", "broken.safetensors")]
    assert "truncated" in broken["problem"] and broken["kind"] == "lora"
    ink = by_name[("a1111", "styles/ink.safetensors")]
    assert ink["id"] == "a1111:styles/ink.safetensors" and ink["name"] == "ink" and ink["family"] == "sd1"
    assert ink["about"] == "ink wash style" and ink["triggers"][:2] == ["inkwash", "brush strokes"]
    assert ink["has_preview"] and ink["preview_url"] == f"/{API}/library/lora/a1111%3Astyles/ink.safetensors/preview"

    def hashed() -> dict[str, Any] | None:
        item = next(i for i in served.get(f"{API}/library", kind="controlnet") if i["layout"] == "comfyui")
        return item if item["sha256"] else None

    depth = wait_for(hashed, 30, "the ControlNet's hash")
    assert depth["sha256"] == sha256(served.comfy["controlnet"]) and depth["short_hash"] == depth["sha256"][:10]

    loras = served.get(f"{API}/library", kind="lora")
    assert {i["kind"] for i in loras} == {"lora"} and len(loras) == 6
    xl = served.get(f"{API}/library", family="sdxl")
    assert {i["family"] for i in xl} <= {"sdxl", ""} and {"glow_xl", "bigxl", "xl_style", "4x_ultra"} <= {
        i["name"] for i in xl}
    found = served.get(f"{API}/library", q="INK")
    assert {i["id"] for i in found} == {"a1111:styles/ink.safetensors", "comfyui:styles/ink.safetensors"}
    assert [i["name"] for i in served.get(f"{API}/library", q="wash STYLE")] == ["ink"]  # its description
    for params, words in (({"kind": "hypernetwork"}, "checkpoint, vae, lora"), ({"family": "sd3"}, "sd1, sd2, sdxl")):
        refused = served.client.get(f"{API}/library", params=params)
        assert refused.status_code == 422 and words in refused.text, refused.text


def test_previews_are_served_for_library_files_only(served: Served) -> None:
    ink = next(i for i in served.get(f"{API}/library", q="ink") if i["layout"] == "a1111")
    picture = served.client.get(ink["preview_url"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert picture.content == served.webui["lora"].with_suffix(".preview.png").read_bytes()
    dreamy = served.client.get(f"{API}/library/checkpoint/dreamy.safetensors/preview")
    with Image.open(io.BytesIO(dreamy.content)) as image:
        assert image.getpixel((0, 0)) == (40, 200, 40)
    assert served.client.get(f"{API}/library/upscaler/4x-fast.safetensors/preview").status_code == 200

    for path in (f"{API}/library/lora/glow_xl.safetensors/preview",  # a library file without a preview
                 f"{API}/library/lora/fake_picture.safetensors/preview",  # its ".png" holds no picture
                 f"{API}/library/checkpoint/styles/ink.safetensors/preview",  # a file, but of another kind
                 f"{API}/library/lora/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/preview",
                 f"{API}/library/lora/..%2F..%2F..%2F..%2Fetc%2Fpasswd/preview",
                 f"{API}/library/lora/{served.webui['lora'].with_suffix('.preview.png')}/preview",
                 f"{API}/library/lora/styles%2F..%2F..%2F..%2FStable-diffusion%2Fdreamy.png/preview"):
        refused = served.client.get(path)
        assert refused.status_code == 404 and "root:" not in refused.text, (path, refused.status_code)
    raw = served.client.get(f"{API}/library/lora/../../etc/passwd/preview")  # httpx folds the dots; still no file
    assert raw.status_code in (404, 422) and "root:" not in raw.text
    unknown = served.client.get(f"{API}/library/hypernetwork/x/preview")
    assert unknown.status_code == 422 and "checkpoint" in unknown.text


def test_every_library_route_needs_a_login(served: Served) -> None:
    url = str(served.client.base_url)
    for method, path in A1111_ROUTES + NATIVE_ROUTES:
        response = httpx.request(method, url + path, timeout=30)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"].startswith("Basic")
    # a wrong password, once (more would meet the login limits' 429, which is theirs to test)
    assert httpx.get(url + f"{API}/library", auth=("ann", "wrong"), timeout=30).status_code == 401


def test_refresh_finds_files_added_after_the_start(served: Served) -> None:
    models = served.root / "webui" / "models"
    before = served.client.post(f"{API}/models/refresh").json()
    lora = model_trees.lora(models / "Lora" / "late_lora.safetensors")
    vae = model_trees.vae(models / "VAE" / "late-vae.safetensors")
    checkpoint = model_trees.checkpoint(models / "Stable-diffusion" / "late.safetensors", "sd2")
    assert str(lora) not in by_path(served.get(f"{SD}/loras"), "path")  # not before a rescan

    assert served.client.post(f"{SD}/refresh-loras").status_code == 200
    assert str(lora) in by_path(served.get(f"{SD}/loras"), "path")
    model_trees.embedding(served.root / "webui" / "embeddings" / "late_emb.safetensors", "sd2", vectors=3)
    assert served.client.post(f"{SD}/refresh-vae").status_code == 200
    assert str(vae) in by_path(served.get(f"{SD}/sd-vae"), "filename")
    served.choose("sd2/wide.safetensors")
    assert served.get(f"{SD}/embeddings")["loaded"]["late_emb"]["vectors"] == 3
    assert served.client.post(f"{SD}/refresh-checkpoints").status_code == 200
    assert wait_for(lambda: by_path(served.get(f"{SD}/sd-models"), "filename").get(str(checkpoint), {}).get("hash"),
                    30, "the new checkpoint's hash") == sha256(checkpoint)[:10]

    after = served.client.post(f"{API}/models/refresh").json()
    assert set(after) == {"files", "problems", "models", "hashing"}
    for kind in ("lora", "vae", "checkpoint", "embedding"):
        assert after["files"][kind] == before["files"][kind] + 1, kind
    assert after["problems"] == before["problems"] == 1 and after["models"] == before["models"] + 1
