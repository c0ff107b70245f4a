"""Which GAN architectures Atelier has, and in which module each lives, found without importing torch.

Every module `pipelines/nets/gan_<name>.py` may define generator classes (subclasses of `GanGenerator`, directly
or through another generator class). Listing models asks only whether a folder's `_class_name` is one of them, and
the studio's server lists models without loading torch or diffusers, so the classes are read from the modules'
source with `ast`; a module is imported only when one of its generators loads (`pipelines.nets.gan_base`).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import pkgutil
from pathlib import Path

import pipelines.nets

GAN_BASE = "GanGenerator"


@functools.cache
def gan_architectures() -> dict[str, str]:
    """Class name (= config `_class_name`) → module name, for every generator class of the `gan_*` modules. Read once
    per process (~2 ms): listing models asks it for every model folder, and the modules do not change while running.
    Callers must not change the dict."""
    bases: dict[str, tuple[str, list[str]]] = {}  # class name → (module name, names of its bases)
    for info in pkgutil.iter_modules(pipelines.nets.__path__):
        if not info.name.startswith("gan_") or info.name == "gan_base":
            continue
        module = f"{pipelines.nets.__name__}.{info.name}"
        for name, parents in _classes(module):
            bases[name] = (module, parents)
    found: dict[str, str] = {}
    grew = True
    while grew:  # a generator may derive from another module's generator: follow until nothing new is found
        grew = False
        for name, (module, parents) in bases.items():
            if name not in found and any(p == GAN_BASE or p in found for p in parents):
                found[name] = module
                grew = True
    return found


def _classes(module: str) -> list[tuple[str, list[str]]]:
    """Top-level classes of `module` with the last part of each base's name (`nets.Foo` → `Foo`)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    return [(node.name, [_last_name(base) for base in node.bases])
            for node in tree.body if isinstance(node, ast.ClassDef)]


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""
