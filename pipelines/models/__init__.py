"""The model library, a leaf of `pipelines`: it imports no other pipelines module, so the pipelines, the catalogue
and the studio all build on it without importing one another.

- `kinds`: the kinds of model file and the base families;
- `entries`: ModelEntry (what a pipeline can load), model-card and config readers, the bundled models' folder;
- `layouts`, `scan`, `header`, `sniff`, `sidecars`: finding files in Atelier's, A1111's and ComfyUI's folders and
  reading what each is;
- `library`: the Library of everything found, with names resolved as A1111 and ComfyUI users write them;
- `hashes`: SHA-256 in the background, cached in SQLite;
- `hub`: models on the Hugging Face hub.
"""

from pipelines.models.entries import BUNDLED_DIR, ModelEntry
from pipelines.models.hub import ModelError
from pipelines.models.library import AmbiguousModel, Library
from pipelines.models.scan import ModelFile

__all__ = ["BUNDLED_DIR", "AmbiguousModel", "Library", "ModelEntry", "ModelError", "ModelFile"]
