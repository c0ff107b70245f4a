"""StudioConfig: every setting of the studio, typed, with its default, its CLI flag and its ATELIER_* variable.

Precedence: command-line flag > environment variable > default. `parse_config(argv, environ)` is the only
place that reads either; the rest of the studio receives a StudioConfig.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from studio.workers.cache import MemoryBudget

ENV_PREFIX = "ATELIER_"
GENERATED_USER = "atelier"  # the login --share-generate-password makes
LOG_LEVELS = ("debug", "info", "warning", "error")
BACKENDS = ("local", "ray")  # where the model workers run
LOOPBACK_HOSTS = ("localhost", "::1")  # and 127.0.0.0/8
# what one job of a shared or network-facing studio may ask for unless the owner says otherwise: every batch the
# text-to-image tab allows (8 × 16), and pictures up to SDXL's 1024 × 1024
EXPOSED_CAPS = (128, 1.05)


@dataclass(frozen=True)
class JobCaps:
    """What one job may ask for, whoever asks (0: no cap)."""

    images: int = 0  # pictures per job
    pixels: int = 0  # pixels per picture
    any_hub_model: bool = True  # a model may be any hub id, not only a listed one


def default_data_dir() -> Path:
    """Per-user data dir: ~/.local/share/atelier on Linux, ~/Library/Application Support/atelier on macOS…"""
    return Path(platformdirs.user_data_dir("atelier", appauthor=False))


@dataclass(frozen=True)
class StudioConfig:
    host: str = "127.0.0.1"  # loopback: only this machine can reach the studio unless the user opens it up
    port: int = 7860  # A1111's port, so clients that assume it find us; the next free one is taken if busy
    share: bool = False  # Gradio's public share link
    auth: str | None = None  # "USER:PASS"
    auth_file: Path | None = None  # logins file (USER:HASH lines); default: <data_dir>/logins when it exists
    share_generate_password: bool = False  # make a random login for this run and print it once
    insecure_no_auth: bool = False  # serve a shared or network-facing studio without logins, knowingly
    shared_gallery: bool = False  # every user sees (not changes) everyone's artworks
    # other names the studio answers to (a reverse proxy's, a DNS name for the machine): the Host header must be
    # one of them, a loopback name, an IP address, --host or the share link's, so a rebound DNS name is refused
    allowed_hosts: tuple[str, ...] = ()
    # pages on other sites (scheme://host[:port]) whose scripts may call the API with the user's login (CORS);
    # A1111's --cors-allow-origins. Every other cross-site request that carries a login or changes state is refused
    cors_allow_origins: tuple[str, ...] = ()
    open_browser: bool = True  # the desktop launch opens the browser once the server is ready
    window: bool = False  # open a native window (pywebview) instead of the browser; closing it stops the studio
    data_dir: Path = field(default_factory=default_data_dir)  # gallery, queue, settings
    # the user's model folders: Atelier's own, A1111/Forge's or ComfyUI's (or its extra_model_paths.yaml)
    models_dirs: tuple[Path, ...] = ()
    devices: str = "auto"  # "auto" (each CUDA GPU, else the CPU), "cpu", or "cuda:0,cuda:1"
    offline: bool = False  # never reach a model hub; a missing model is an error, not a download
    allow_pickle: bool = False  # .ckpt/.bin checkpoints can run code when unpickled: refused unless asked
    low_vram: bool = False  # CUDA: keep models in RAM and move each part to the GPU only while it runs
    vae_tiling: bool = False  # decode large images tile by tile (less memory, slightly slower)
    torch_compile: bool = False  # compile the fast style networks: ~2× faster, but the first use waits ~1 min
    log_level: str = "info"
    plugins: tuple[str, ...] = ()  # extra pipeline modules to import ("package.module"), each defining Pipelines
    max_queue: int = 1000  # pending jobs beyond this are refused ("queue full"), so a flood cannot hang the UI
    max_queue_per_user: int = 100  # and beyond this many of one user's, so one user cannot fill the queue
    # the input pictures one user may keep stored (PNGs: an 8000×8000 photo takes ~190 MB); 0: no limit
    max_input_mb_per_user: float = 2000.0
    # per-job caps for every user; None: EXPOSED_CAPS on a shared or network-facing studio, no cap locally; 0: none
    max_images_per_job: int | None = None
    max_megapixels: float | None = None  # of each picture
    allow_any_hub_model: bool = False  # let users of an exposed studio type any hub id (a download) into a tab
    max_batch: int = 4  # pending jobs that differ only in their prompts run as one batch of up to this many
    # budgets of each worker's model cache, in GB; least recently used models go first when one is exceeded
    model_memory_gb: float = 6.0  # main memory (RAM): models on the CPU, and a GPU's models offloaded by --low-vram
    gpu_memory_gb: float | None = None  # each GPU's memory (VRAM); None: 90% of what the GPU has
    in_process_workers: bool = False  # run workers as threads in the server (tests, debugging); default: processes
    # where the model workers run: "local" (processes of this machine) or "ray" (actors on a Ray cluster)
    backend: str = "local"
    ray_address: str = ""  # "": Ray's default (RAY_ADDRESS, else this machine's cluster, else a new local one)
    ray_workers: int = 0  # worker actors; 0: one per GPU of the cluster, or one when it has no GPU
    ray_worker_cpus: float = 1.0  # CPUs Ray reserves for each actor (and its torch threads, on a CPU-only cluster)

    @property
    def memory_budget(self) -> MemoryBudget:
        gpu = None if self.gpu_memory_gb is None else int(self.gpu_memory_gb * 1e9)
        return MemoryBudget(ram=int(self.model_memory_gb * 1e9), vram=gpu)

    @property
    def auth_pairs(self) -> list[tuple[str, str]]:
        """The --auth login, validated (empty list: none given)."""
        if not self.auth:
            return []
        user, sep, password = self.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth must look like USER:PASS (neither part empty)")
        return [(user, password)]

    @property
    def logins_file(self) -> Path:
        """Where `launch.py users add` writes and the studio reads logins: --auth-file, else in the data dir."""
        return self.auth_file or self.data_dir / "logins"

    @property
    def logins_files(self) -> list[Path]:
        """The logins files in force: --auth-file (which must exist), else the data dir's when there is one."""
        if self.auth_file:
            return [self.auth_file]
        return [self.logins_file] if self.logins_file.exists() else []

    @property
    def exposed(self) -> bool:
        """Reachable from other machines: a share link, or listening beyond loopback."""
        return self.share or self.host not in LOOPBACK_HOSTS and not self.host.startswith("127.")

    @property
    def job_caps(self) -> JobCaps:
        """The per-job caps in force: the flags, else EXPOSED_CAPS when exposed, else none."""
        images, megapixels = EXPOSED_CAPS if self.exposed else (0, 0.0)
        if self.max_images_per_job is not None:
            images = self.max_images_per_job
        if self.max_megapixels is not None:
            megapixels = self.max_megapixels
        return JobCaps(images, round(megapixels * 1e6), any_hub_model=self.allow_any_hub_model or not self.exposed)

    @property
    def has_logins(self) -> bool:
        return bool(self.auth_pairs or self.logins_files or self.share_generate_password)

    def check(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"--port must be between 1 and 65535, got {self.port}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        for origin in self.cors_allow_origins:
            if not re.fullmatch(r"https?://[^/\s]+", origin):
                raise ValueError(f"--cors-allow-origins: {origin!r} is not an origin; write scheme://host[:port], "
                                 "as https://app.example or http://localhost:3000")
        if self.max_queue < 1:
            raise ValueError(f"--max-queue must be at least 1, got {self.max_queue}")
        if not self.max_input_mb_per_user >= 0:
            raise ValueError(f"--max-input-mb-per-user must be 0 (no limit) or more, got {self.max_input_mb_per_user}")
        if self.max_queue_per_user < 1:
            raise ValueError(f"--max-queue-per-user must be at least 1, got {self.max_queue_per_user}")
        if (self.max_images_per_job or 0) < 0:
            raise ValueError(f"--max-images-per-job must be 0 (no cap) or more, got {self.max_images_per_job}")
        if not (self.max_megapixels or 0) >= 0:
            raise ValueError(f"--max-megapixels must be 0 (no cap) or more, got {self.max_megapixels}")
        if self.max_batch < 1:
            raise ValueError(f"--max-batch must be at least 1 (1: no batching), got {self.max_batch}")
        if not self.model_memory_gb > 0:
            raise ValueError(f"--model-memory-gb must be positive, got {self.model_memory_gb}")
        if self.gpu_memory_gb is not None and not self.gpu_memory_gb > 0:
            raise ValueError(f"--gpu-memory-gb must be positive, got {self.gpu_memory_gb}")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.ray_workers < 0:
            raise ValueError(f"--ray-workers must be 0 (one per GPU of the cluster) or more, got {self.ray_workers}")
        if not self.ray_worker_cpus > 0:
            raise ValueError(f"--ray-worker-cpus must be positive, got {self.ray_worker_cpus}")
        if self.backend == "ray" and self.devices != "auto":
            raise ValueError("--devices picks this machine's devices for local workers; with --backend ray, Ray "
                             "places the workers (size them with --ray-workers)")
        self.auth_pairs  # noqa: B018 -- validates the credentials early, with the flag's name in the message
        if self.auth_file and not self.auth_file.is_file():
            raise ValueError(f"--auth-file {self.auth_file}: no such file (create it with `python launch.py users "
                             f"add NAME --auth-file {self.auth_file}`)")
        if self.exposed and not self.has_logins and not self.insecure_no_auth:
            where = "--share puts the studio on the internet" if self.share else \
                f"--host {self.host} lets other machines reach the studio"
            raise ValueError(f"{where}, and it has no logins. Add one (`python launch.py users add NAME`, or --auth "
                             "USER:PASS), or pass --share-generate-password for a random one; "
                             "--insecure-no-auth serves it open to anyone, if you really mean that")

    @property
    def device_options(self) -> dict[str, bool]:
        """Settings every worker passes to Pipeline.load, whatever the model."""
        return {"low_vram": self.low_vram, "vae_tiling": self.vae_tiling, "torch_compile": self.torch_compile}

    @property
    def logging_level(self) -> int:
        return getattr(logging, self.log_level.upper())


def _env_flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a yes/no value, got {value!r}")


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    d = StudioConfig()

    def default(name: str, fallback: object) -> object:
        return env.get(ENV_PREFIX + name.upper(), fallback)

    def flag(name: str) -> bool:
        try:
            return _env_flag(env.get(ENV_PREFIX + name.upper(), "0"))
        except ValueError as e:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}: {e}") from None

    p = argparse.ArgumentParser(
        prog="launch.py",
        description="Atelier: an AI art studio in your browser. Every flag can also be set with the "
        "ATELIER_<FLAG> environment variable (e.g. ATELIER_PORT=7861, ATELIER_NO_BROWSER=1).",
    )
    p.add_argument("--host", default=default("host", d.host), help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=default("port", d.port),
                   help="port; if busy, the next free one is taken (default %(default)s)")
    p.add_argument("--share", action="store_true", default=flag("share"),
                   help="also serve through a public Gradio share link")
    p.add_argument("--allowed-hosts", metavar="NAME,…", default=default("allowed_hosts", ""),
                   help="other host names the studio answers to (a reverse proxy's, the machine's DNS name)")
    p.add_argument("--cors-allow-origins", metavar="ORIGIN,…", default=default("cors_allow_origins", ""),
                   help="pages on other sites (https://app.example) whose scripts may call the API as the user")
    p.add_argument("--auth", metavar="USER:PASS", default=default("auth", None),
                   help="require this login (the password shows in `ps`: prefer `launch.py users add NAME`, which "
                        "stores a hash, or --auth-file)")
    p.add_argument("--auth-file", metavar="PATH", type=Path, default=default("auth_file", None),
                   help="require a login from this file (`launch.py users add NAME` writes it; default: the "
                        "data dir's `logins`, when it exists)")
    p.add_argument("--share-generate-password", action="store_true", default=flag("share_generate_password"),
                   help=f"make a random password for the login '{GENERATED_USER}' and print it once")
    p.add_argument("--insecure-no-auth", action="store_true", default=flag("insecure_no_auth"),
                   help="allow --share or a network --host without any login (anyone with the address can use "
                        "the studio and its GPU)")
    p.add_argument("--shared-gallery", action="store_true", default=flag("shared_gallery"),
                   help="let every user see everyone's artworks (each still changes and deletes only their own)")
    p.add_argument("--no-browser", action="store_true", default=flag("no_browser"),
                   help="do not open the browser when the server is ready")
    p.add_argument("--window", action="store_true", default=flag("window"),
                   help="open the studio in its own window instead of the browser; closing it stops the studio "
                        "(needs pywebview: pip install \"atelier[window]\"; without it, the browser opens)")
    p.add_argument("--data-dir", type=Path, default=default("data_dir", d.data_dir),
                   help="where the gallery, queue and settings live (default %(default)s)")
    p.add_argument("--models-dir", type=Path, action="append", default=None,
                   help="a folder of models: Atelier's own, an A1111/Forge or ComfyUI install (or its models/ "
                        "folder), or ComfyUI's extra_model_paths.yaml; may be given several times (default: "
                        f"{ENV_PREFIX}MODELS_DIR, a {os.pathsep!r}-separated list)")
    p.add_argument("--devices", default=default("devices", d.devices),
                   help="'auto' (one worker per CUDA GPU, else the CPU), 'cpu', or 'cuda:0,cuda:1'")
    p.add_argument("--offline", action="store_true", default=flag("offline"),
                   help="never contact a model hub; missing models are errors")
    p.add_argument("--allow-pickle", action="store_true", default=flag("allow_pickle"),
                   help="load .ckpt/.bin checkpoints (pickles, which can run code; loaded with weights_only=True)")
    p.add_argument("--low-vram", action="store_true", default=flag("low_vram"),
                   help="CUDA: offload model parts to RAM between uses (slower, fits small GPUs)")
    p.add_argument("--vae-tiling", action="store_true", default=flag("vae_tiling"),
                   help="decode images in tiles: large sizes with less memory")
    p.add_argument("--torch-compile", action="store_true", default=flag("torch_compile"),
                   help="compile the fast style-transfer networks (about 2× faster after a first compile of ~1 min)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default=default("log_level", d.log_level))
    p.add_argument("--plugins", default=default("plugins", ""),
                   help="comma-separated Python modules defining extra pipelines (e.g. mypkg.pipelines)")
    p.add_argument("--max-queue", type=int, default=default("max_queue", d.max_queue),
                   help="most pending jobs accepted at once (default %(default)s)")
    p.add_argument("--max-queue-per-user", type=int, default=default("max_queue_per_user", d.max_queue_per_user),
                   help="most pending jobs of one user (default %(default)s); users take turns in the queue")
    p.add_argument("--max-input-mb-per-user", type=float,
                   default=default("max_input_mb_per_user", d.max_input_mb_per_user),
                   help="megabytes of input pictures one user may keep stored (default %(default)s; 0: no limit)")
    caps = "default: %s on a shared or network-facing studio, none locally; 0: no cap"
    p.add_argument("--max-images-per-job", type=int, default=default("max_images_per_job", None),
                   help="most pictures one job may make, frames and grid tiles included ("
                        + caps % EXPOSED_CAPS[0] + ")")
    p.add_argument("--max-megapixels", type=float, default=default("max_megapixels", None),
                   help="largest picture one job may ask for, in millions of pixels (" + caps % EXPOSED_CAPS[1] + ")")
    p.add_argument("--allow-any-hub-model", action="store_true", default=flag("allow_any_hub_model"),
                   help="on a shared or network-facing studio, let users type any Hugging Face hub id (the studio "
                        "downloads it); by default they pick among the listed models")
    p.add_argument("--max-batch", type=int, default=default("max_batch", d.max_batch),
                   help="run up to this many waiting text-to-image jobs that differ only in their prompts as one "
                        "batch (default %(default)s; 1: one job at a time)")
    p.add_argument("--model-memory-gb", type=float, default=default("model_memory_gb", d.model_memory_gb),
                   help="main memory (RAM) each worker may spend on loaded models; on a GPU worker, what --low-vram "
                        "keeps off the GPU (default %(default)s GB)")
    p.add_argument("--gpu-memory-gb", type=float, default=default("gpu_memory_gb", None),
                   help="GPU memory (VRAM) each GPU worker may spend on loaded models (default: 90%% of the GPU's)")
    p.add_argument("--backend", choices=BACKENDS, default=default("backend", d.backend),
                   help="where the model workers run: 'local' (processes on this machine, the default) or 'ray' "
                        "(actors on a Ray cluster; needs pip install \"atelier[ray]\")")
    p.add_argument("--ray-address", default=default("ray_address", d.ray_address),
                   help="with --backend ray: 'auto' (the cluster this machine belongs to) or ray://HOST:10001 "
                        "(default: RAY_ADDRESS, else a cluster on this machine, else a new Ray instance here)")
    p.add_argument("--ray-workers", type=int, default=default("ray_workers", d.ray_workers),
                   help="with --backend ray: how many worker actors (default: one per GPU of the cluster, or one "
                        "when it has no GPU)")
    p.add_argument("--ray-worker-cpus", type=float, default=default("ray_worker_cpus", d.ray_worker_cpus),
                   help="with --backend ray: CPUs each worker actor reserves (default %(default)s; on a cluster "
                        "without GPUs, give each more: they are its torch threads)")
    return p


def _listed(text: str) -> tuple[str, ...]:
    """A comma-separated flag's entries, without spaces or empty ones."""
    return tuple(entry.strip() for entry in text.split(",") if entry.strip())


def _models_dirs(given: list[Path] | None, env: Mapping[str, str]) -> tuple[Path, ...]:
    """--models-dir flags, else ATELIER_MODELS_DIR's entries (separated as PATH is)."""
    listed = given if given is not None else [Path(p) for p in env.get(f"{ENV_PREFIX}MODELS_DIR", "").split(os.pathsep)
                                              if p.strip()]
    return tuple(dict.fromkeys(Path(p).expanduser() for p in listed))


def parse_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> StudioConfig:
    """CLI flags and ATELIER_* variables → a checked StudioConfig (argparse exits with a message on bad input)."""
    try:
        parser = build_parser(environ)
    except ValueError as e:
        raise SystemExit(f"launch.py: error: {e}") from None
    try:
        ns = parser.parse_args(argv)
        env = os.environ if environ is None else environ
        config = StudioConfig(
            host=ns.host, port=int(ns.port), share=ns.share, auth=ns.auth,
            auth_file=Path(ns.auth_file) if ns.auth_file else None, open_browser=not ns.no_browser,
            share_generate_password=ns.share_generate_password, insecure_no_auth=ns.insecure_no_auth,
            shared_gallery=ns.shared_gallery, window=ns.window, allowed_hosts=_listed(ns.allowed_hosts),
            cors_allow_origins=tuple(o.rstrip("/") for o in _listed(ns.cors_allow_origins)),
            data_dir=Path(ns.data_dir).expanduser(), models_dirs=_models_dirs(ns.models_dir, env),
            devices=ns.devices, offline=ns.offline, allow_pickle=ns.allow_pickle, log_level=ns.log_level,
            low_vram=ns.low_vram, vae_tiling=ns.vae_tiling, torch_compile=ns.torch_compile,
            plugins=_listed(ns.plugins),
            max_queue=int(ns.max_queue), max_queue_per_user=int(ns.max_queue_per_user),
            max_input_mb_per_user=float(ns.max_input_mb_per_user),
            max_images_per_job=None if ns.max_images_per_job is None else int(ns.max_images_per_job),
            max_megapixels=None if ns.max_megapixels is None else float(ns.max_megapixels),
            allow_any_hub_model=ns.allow_any_hub_model, max_batch=int(ns.max_batch),
            model_memory_gb=float(ns.model_memory_gb),
            gpu_memory_gb=None if ns.gpu_memory_gb is None else float(ns.gpu_memory_gb),
            backend=ns.backend, ray_address=ns.ray_address, ray_workers=int(ns.ray_workers),
            ray_worker_cpus=float(ns.ray_worker_cpus),
        )
        config.check()
    except ValueError as e:
        parser.error(str(e))
    return config
