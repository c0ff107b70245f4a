"""Flags, ATELIER_* variables and their errors; the README's commands are the ones CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from studio.config import EXPOSED_CAPS, JobCaps, StudioConfig, default_data_dir, parse_config
from studio.workers import devices
from studio.workers.cache import MemoryBudget
from studio.workers.devices import resolve_devices

ROOT = Path(__file__).parent.parent


def test_defaults_are_a_local_desktop_launch() -> None:
    config = parse_config([], {})
    assert (config.host, config.port, config.share, config.open_browser) == ("127.0.0.1", 7860, False, True)
    assert config.data_dir == default_data_dir() and config.devices == "auto" and config.auth_pairs == []


def test_environment_sets_every_flag_and_the_command_line_wins() -> None:
    env = {"ATELIER_HOST": "0.0.0.0", "ATELIER_PORT": "8000", "ATELIER_SHARE": "1", "ATELIER_AUTH": "ana:pw",
           "ATELIER_NO_BROWSER": "yes", "ATELIER_DATA_DIR": "/srv/atelier", "ATELIER_MODELS_DIR": "/srv/models",
           "ATELIER_DEVICES": "cpu", "ATELIER_OFFLINE": "true", "ATELIER_ALLOW_PICKLE": "1",
           "ATELIER_LOG_LEVEL": "debug", "ATELIER_LOW_VRAM": "1", "ATELIER_VAE_TILING": "on",
           "ATELIER_TORCH_COMPILE": "yes", "ATELIER_WINDOW": "1",
           "ATELIER_PLUGINS": "a.b, c.d", "ATELIER_MAX_QUEUE": "5", "ATELIER_MODEL_MEMORY_GB": "1.5",
           "ATELIER_GPU_MEMORY_GB": "7"}
    config = parse_config([], env)
    assert config == StudioConfig(
        host="0.0.0.0", port=8000, share=True, auth="ana:pw", open_browser=False, data_dir=Path("/srv/atelier"),
        models_dirs=(Path("/srv/models"),), devices="cpu", offline=True, allow_pickle=True, log_level="debug",
        plugins=("a.b", "c.d"), max_queue=5, model_memory_gb=1.5, gpu_memory_gb=7.0, low_vram=True, vae_tiling=True,
        torch_compile=True, window=True)
    assert config.memory_budget == MemoryBudget(ram=1_500_000_000, vram=7_000_000_000)
    assert parse_config([], {}).memory_budget.vram is None  # each GPU worker takes 90% of its GPU
    assert parse_config(["--port", "9000", "--host", "127.0.0.1"], env).port == 9000


def test_the_ray_backend_is_chosen_by_flags_or_environment() -> None:
    env = {"ATELIER_BACKEND": "ray", "ATELIER_RAY_ADDRESS": "ray://head:10001", "ATELIER_RAY_WORKERS": "4",
           "ATELIER_RAY_WORKER_CPUS": "2.5"}
    config = parse_config([], env)
    assert (config.backend, config.ray_address, config.ray_workers, config.ray_worker_cpus) == \
        ("ray", "ray://head:10001", 4, 2.5)
    assert parse_config(["--backend", "local"], env).backend == "local"
    assert parse_config([], {}).backend == "local"


def test_logins_come_from_the_auth_file_or_the_data_dir(tmp_path: Path) -> None:
    auth = tmp_path / "users"
    auth.write_text("ana:$argon2id$...\n")
    assert parse_config(["--auth-file", str(auth)], {}).logins_files == [auth]
    data = tmp_path / "data"
    assert parse_config(["--data-dir", str(data)], {}).logins_files == []  # none yet: no login page
    data.mkdir()
    (data / "logins").write_text("ben:$argon2id$...\n")
    assert parse_config(["--data-dir", str(data)], {}).logins_files == [data / "logins"]
    assert parse_config(["--auth", "ana:pw:with:colons"], {}).auth_pairs == [("ana", "pw:with:colons")]


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["--share"], "--share puts the studio on the internet, and it has no logins"),
        (["--host", "0.0.0.0"], "--host 0.0.0.0 lets other machines reach the studio, and it has no logins"),
        (["--host", "192.168.1.5"], "--host 192.168.1.5 lets other machines"),
        (["--share", "--auth", "ana:pw"], None),
        (["--share", "--share-generate-password"], None),
        (["--host", "0.0.0.0", "--insecure-no-auth"], None),
        (["--host", "127.0.0.2"], None),
        (["--host", "localhost"], None),
        (["--host", "::1"], None),
    ],
)
def test_a_shared_or_network_studio_needs_logins(argv, refused, tmp_path: Path, capsys) -> None:
    argv = [*argv, "--data-dir", str(tmp_path)]
    if refused is None:
        parse_config(argv, {})
        return
    with pytest.raises(SystemExit):
        parse_config(argv, {})
    error = capsys.readouterr().err
    assert refused in error and "launch.py users add NAME" in error and "--share-generate-password" in error


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "70000"], {}, "--port must be between 1 and 65535, got 70000"),
        (["--auth", "nopassword"], {}, "--auth must look like USER:PASS"),
        (["--auth-file", "/nonexistent/users"], {}, "--auth-file /nonexistent/users: no such file"),
        ([], {"ATELIER_SHARE": "maybe"}, "ATELIER_SHARE: expected a yes/no value, got 'maybe'"),
        ([], {"ATELIER_PORT": "http"}, "argument --port: invalid int value: 'http'"),
        (["--max-queue", "0"], {}, "--max-queue must be at least 1"),
        (["--max-megapixels", "nan"], {}, "--max-megapixels must be 0 (no cap) or more, got nan"),
        (["--max-images-per-job", "-1"], {}, "--max-images-per-job must be 0 (no cap) or more"),
        (["--model-memory-gb", "nan"], {}, "--model-memory-gb must be positive, got nan"),
        (["--gpu-memory-gb", "0"], {}, "--gpu-memory-gb must be positive, got 0.0"),
        ([], {"ATELIER_BACKEND": "slurm"}, "--backend must be one of local, ray, got 'slurm'"),
        (["--backend", "ray", "--ray-workers", "-1"], {}, "--ray-workers must be 0 (one per GPU of the cluster)"),
        (["--backend", "ray", "--ray-worker-cpus", "0"], {}, "--ray-worker-cpus must be positive, got 0.0"),
        (["--backend", "ray", "--devices", "cuda:1"], {}, "with --backend ray, Ray places the workers"),
    ],
)
def test_bad_settings_exit_with_a_message_naming_them(argv, env, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_config(argv, env)
    assert message in (str(exc.value.code) + capsys.readouterr().err)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("gpu", "unknown device 'gpu'"), ("cpu,cpu", "lists a device twice"), ("cuda:7", "cuda:7 not found"),
     (" , ", "--devices is empty")],
)
def test_bad_devices_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_devices(spec)


def test_auto_devices_fall_back_to_the_cpu_without_cuda() -> None:
    import torch

    expected = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"]
    assert resolve_devices("auto") == expected


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver traces looked for are Linux's")
def test_without_a_gpu_driver_devices_resolve_without_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devices, "_LINUX_GPU_PATHS", (str(tmp_path / "nvidia"),))
    monkeypatch.setattr(devices.shutil, "which", lambda tool: None)
    monkeypatch.setitem(sys.modules, "torch", None)  # from here on, `import torch` raises
    assert not devices.cuda_may_be_present()
    assert resolve_devices("auto") == ["cpu"] and resolve_devices("cpu") == ["cpu"]
    with pytest.raises(ValueError, match="cuda:0 not found; this machine has 0 CUDA device"):
        resolve_devices("cuda:0")
    (tmp_path / "nvidia").mkdir()  # a driver appears: only torch can count its GPUs
    assert devices.cuda_may_be_present()
    with pytest.raises(ImportError):
        resolve_devices("auto")


def test_help_documents_every_flag() -> None:
    out = subprocess.run([sys.executable, "launch.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for flag in ("--host", "--port", "--share", "--auth", "--auth-file", "--no-browser", "--data-dir",
                 "--models-dir", "--devices", "--offline", "--log-level", "--share-generate-password",
                 "--insecure-no-auth", "--backend", "--ray-address", "--ray-workers", "ATELIER_"):
        assert flag in out


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)[:2]
    assert "launch.py" in commands[0] and "pytest" in commands[1]
    assert readme.index(commands[1]) < readme.index("## ")  # both come before any section
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci[-1] == commands[1]
    assert all("pip install -c constraints.txt " in command for command in commands)  # both at verified versions


def test_the_constraints_pin_every_dependency_within_its_range() -> None:
    """constraints.txt pins each package pyproject asks for (the test tools too) at one version its range allows."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {text}"


def test_job_caps_are_off_locally_on_when_exposed_and_set_by_flags(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert parse_config(data, {}).job_caps == JobCaps(0, 0, any_hub_model=True)
    exposed = parse_config([*data, "--host", "0.0.0.0", "--auth", "ana:pw"], {}).job_caps
    assert exposed == JobCaps(EXPOSED_CAPS[0], round(EXPOSED_CAPS[1] * 1e6), any_hub_model=False)
    assert exposed.pixels >= 1024 * 1024  # SDXL's native size is allowed
    owner = parse_config([*data, "--share", "--auth", "ana:pw", "--max-images-per-job", "0", "--max-megapixels", "4",
                          "--allow-any-hub-model"], {}).job_caps
    assert owner == JobCaps(0, 4_000_000, any_hub_model=True)
    assert parse_config(data, {"ATELIER_MAX_IMAGES_PER_JOB": "8"}).job_caps.images == 8  # locally too, when asked


def test_offline_reaches_the_catalogue_and_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.services import build_services
    from tests.conftest import make_config

    def sd_turbo_status(offline: bool) -> str:
        services = build_services(make_config(tmp_path / f"data-{offline}", offline=offline))
        try:
            return services.catalog.model("stabilityai/sd-turbo", "text_to_image").status
        finally:
            services.stop()

    monkeypatch.delenv("HF_HUB_OFFLINE")  # the tests' own offline switch, off for this one
    assert sd_turbo_status(offline=False) == "downloads on first use"
    assert sd_turbo_status(offline=True) == "not downloaded (offline)"
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # what worker processes inherit (and Ray actors are given)
