"""The server process never imports torch, diffusers or transformers: only the workers run models.

Importing them costs seconds of every launch (benchmarks/launch.py), so the catalogue, the params checks, the UI and
the API must all do without them. Each case runs in a fresh interpreter, since this test process has imported torch
long before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio.workers.devices import cuda_may_be_present

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parent.parent
HEAVY = ("torch", "diffusers", "transformers")

# What the server does before it answers, short of serving: the services, the catalogue (every core pipeline and
# its models), the UI, the API routes; then a request of each core generator checked as the edge checks it.
SERVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    from fastapi import FastAPI
    from PIL import Image

    import studio.launcher
    from studio.api import mount_api
    from studio.config import StudioConfig
    from studio.services import build_services
    from studio.ui import build_app

    config = StudioConfig(data_dir=Path(sys.argv[1]), devices=sys.argv[2], open_browser=False, log_level="warning")
    services = build_services(config)
    try:
        build_app(services)
        mount_api(FastAPI(), services)
        photo = services.inputs.put(Image.new("RGB", (32, 32)))
        requests = {"text_to_image": {"prompt": "a lighthouse", "width": 64, "height": 64},
                    "gan": {"seeds": "1-4, 9", "mode": "sample"}, "vae": {"num_images": 2},
                    "style_transfer": {"content_image": photo, "mode": "builtin", "style": 3}}
        checked = {}
        for kind, params in requests.items():
            model = services.catalog.default_model(kind)
            spec = services.generation.build_spec(kind, model.id, params, seed=7)
            parsed = services.catalog.pipeline(kind).Params.from_dict(spec.params)
            checked[kind] = [spec.batch_key is not None, parsed.workload().pictures, len(parsed.a1111_fields()) > 0]
    finally:
        services.stop()
    print(json.dumps({"devices": [handle.device for handle in services.pool.handles], "checked": checked,
                      "heavy": sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[3:])}))
""")


def run_server_steps(data_dir: Path, devices: str) -> dict:
    out = subprocess.run([sys.executable, "-c", SERVER, str(data_dir), devices, *HEAVY], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("devices", ["cpu", "auto"])
def test_the_server_builds_its_services_ui_and_api_without_torch(tmp_path: Path, devices: str) -> None:
    if devices == "auto" and cuda_may_be_present():
        pytest.skip("a GPU driver is present: resolving 'auto' imports torch to count the GPUs, as it should")
    report = run_server_steps(tmp_path / "data", devices)
    assert report["heavy"] == [] and report["devices"] == ["cpu"]
    assert report["checked"] == {"text_to_image": [True, 1, True], "gan": [False, 5, True],
                                 "vae": [False, 2, True], "style_transfer": [False, 1, True]}
