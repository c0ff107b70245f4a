"""The gallery with 100,000 artworks: a page, a prompt search and the startup reconcile, against their targets.

With 100,000 records in the store it times (medians) what the Gallery tab and the API ask for: the newest page of
48 and page 1,000 (halfway in a smaller run; each with the count the tab shows beside it), a cursor page deep in
the list, counts, filters by generator, model and favourite, prompt searches (a word in about 1% of artworks, one
in none, a common one), and `GalleryStore.reconcile` as the studio runs it at start, on a whole gallery and after
damage of a known size.
Targets are absolute, for a 2-core machine: a page ≤ 30 ms, a search ≤ 100 ms, reconcile ≤ 2 s. The gallery is
built in a temporary folder in about a minute: records go through the gallery's own record layer, and each gets a
small real PNG (with its `parameters` and `atelier` chunks) and a WebP thumbnail where the store puts them, so
reconcile compares a folder and a database that match, as a studio's do.

Run: `python -m benchmarks.gallery --full` (100,000 artworks, each figure timed 15 times) or `--quick` (25,000
artworks, 5 times: a smoke run, not the targets' size); writes benchmarks/results/gallery.md.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import platform
import random
import sqlite3
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from benchmarks.common import Row, measure, parse_quick, write_report
from studio.db import Database
from studio.gallery import GalleryStore, Recipe, ReconcileReport, artwork_id_for
from studio.gallery.files import THUMBS_DIR, image_relpath, thumb_relpath
from studio.gallery.metadata import PARAMETERS_KEY, RECIPE_KEY, format_parameters
from studio.gallery.records import MIGRATIONS, ArtworkRecord, GalleryRecords
from studio.gallery.store import DB_NAME

RECORDS = 100_000  # the size the targets name (--full)
QUICK_RECORDS = 25_000  # --quick: a smoke run that fits the quick suite's few minutes (building takes most of it)
PAGE = 48
DEEP_PAGE = 1_000  # a page deep in the list (of 2,084 at 100,000 artworks); about halfway in smaller runs
BATCH = 2_000  # records per transaction while building
TARGET_PAGE_MS = 30.0
TARGET_SEARCH_MS = 100.0
TARGET_RECONCILE_S = 2.0
OWNER = "local"  # a studio without logins: every artwork is the local user's, and the UI filters by it
RARE_WORD = "lighthouse"  # in about 1% of all artworks
MISSING_WORD = "zeppelin"  # in no prompt
START = 1_700_000_000.0  # 2023-11-14 UTC; jobs follow every 1–20 minutes from there

# (pipeline, share of jobs, models, images per job); prompts exist only for text to image, as in the studio
PIPELINES = [
    ("text_to_image", 0.70, ["atelier-emoji-v1", "stabilityai/sd-turbo", "runwayml/stable-diffusion-v1-5"], 4),
    ("gan", 0.10, ["dcgan-digiface"], 1),
    ("vae", 0.10, ["vae-emoji"], 1),
    ("style_transfer", 0.10, ["candy", "mosaic", "udnie", "arbitrary"], 1),
]
SUBJECTS = ("a red fox", "an old man", "a cat", "a castle", "a dragon", "a forest", "a robot", "a city street",
            "a bowl of fruit", "a mountain lake", "a sailing ship", "a portrait of a woman", "an owl", "a garden",
            "a spaceship", "a tea cup", "a horse", "a waterfall", "a library", "a market")
PLACES = ("in the snow", "at sunset", "under the rain", "in space", "on a hill", "by the sea", "at night",
          "in a misty valley", "in the desert", "in a cozy room")
STYLES = ("watercolor", "oil painting", "pixel art", "studio ghibli style", "photorealistic", "ink sketch",
          "cyberpunk", "impressionist", "low poly", "art nouveau", "charcoal drawing", "vaporwave")
EXTRAS = ("highly detailed", "8k", "soft light", "dramatic lighting", "trending on artstation", "bokeh",
          "golden hour", "volumetric fog", "sharp focus", "pastel colors")
NEGATIVES = ("", "blurry", "blurry, low quality", "lowres, bad anatomy, bad hands, text, error, watermark")


@dataclass(frozen=True)
class Built:
    """What `build_gallery` made and how long it took."""

    records: int
    seconds: float
    favourites: int


def recipes(count: int, rng: random.Random) -> list[Recipe]:
    """`count` recipes in jobs of one to four images, oldest first, as `GenerationService.deliver` writes them."""
    out: list[Recipe] = []
    created, job = START, 0
    weights = [share for _, share, _, _ in PIPELINES]
    while len(out) < count:
        pipeline, _, models, most = rng.choices(PIPELINES, weights)[0]
        model, images = rng.choice(models), min(rng.randint(1, most), count - len(out))
        params = job_params(pipeline, rng)
        created += rng.uniform(60, 1200)
        job += 1
        for index in range(images):
            out.append(Recipe(
                pipeline=pipeline, model=model, model_hash=f"{rng.getrandbits(32):08x}", params=params,
                seed=rng.getrandbits(63), owner=OWNER, job_id=f"{job:016x}", index=index, count=images,
                app_version="0.1.0", a1111=a1111_fields(params), info={"licence": "Apache-2.0"},
                created_at=created,
            ))
    return out


def job_params(pipeline: str, rng: random.Random) -> dict[str, object]:
    if pipeline != "text_to_image":
        return {"num_images": 1, "seeds": "", "truncation": 1.0}
    words = [rng.choice(SUBJECTS), rng.choice(PLACES), rng.choice(STYLES), *rng.sample(EXTRAS, rng.randint(0, 3))]
    if rng.random() < 1 / 70:  # text to image makes ~85% of artworks (up to 4 a job): the word is in ~1.2% of all
        words.insert(1, f"near a {RARE_WORD}")
    return {"prompt": ", ".join(words), "negative_prompt": rng.choice(NEGATIVES), "sampler": "Euler a",
            "num_steps": rng.choice((1, 4, 20, 30)), "cfg_scale": 7.0, "width": 512, "height": 512,
            "batch_size": 1, "batch_count": 1}


def a1111_fields(params: dict[str, object]) -> dict[str, object]:
    if "prompt" not in params:
        return {}
    return {"Steps": params["num_steps"], "Sampler": params["sampler"], "CFG scale": params["cfg_scale"],
            "Size": "512x512"}


def tiny_png(pixels: bytes, recipe: Recipe) -> bytes:
    """`pixels` (a PNG without text) with the recipe's `parameters` and `atelier` chunks after its header, as
    `GalleryStore.add` writes them: a real PNG that reconcile could re-index. Spliced rather than encoded by
    Pillow, which would add about 20 s to the build; the prompts here are ASCII, so tEXt is the chunk Pillow
    would write too."""
    header = 8 + 25  # the PNG signature, then the IHDR chunk (13 bytes of data, length, type and CRC)
    text = b"".join(
        text_chunk(key, value)
        for key, value in ((PARAMETERS_KEY, format_parameters(recipe)), (RECIPE_KEY, recipe.to_json()))
    )
    return pixels[:header] + text + pixels[header:]


def text_chunk(key: str, value: str) -> bytes:
    body = b"tEXt" + key.encode("latin-1") + b"\0" + value.encode("latin-1")
    return struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))


def build_gallery(root: Path, count: int, seed: int = 0, schema: int = 1) -> Built:
    """A gallery of `count` artworks under `root`, laid out exactly as `GalleryStore.add` would leave it, with the
    records' schema at version `schema` (the first release's by default: the first start then shows what
    upgrading an existing gallery costs).

    The records go through the record layer, a batch per transaction; the files are written plainly (no temp
    file, no fsync: `add`'s durable writes would take hours here and change nothing that reading or reconciling
    sees) by a second thread while the next batch of records is made.
    """
    start = time.perf_counter()
    rng = random.Random(seed)
    made = recipes(count, rng)
    image, png, thumb = Image.new("RGB", (8, 8), (200, 120, 40)), io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG")
    image.save(thumb, format="WEBP", quality=82)
    for month in {image_relpath("x", recipe.created_at) for recipe in made}:
        (root / month).parent.mkdir(parents=True, exist_ok=True)
    (root / THUMBS_DIR).mkdir(parents=True, exist_ok=True)
    db = Database(root / DB_NAME, MIGRATIONS[:schema])
    records, favourites = GalleryRecords(db), 0
    with ThreadPoolExecutor(max_workers=1) as writer:
        try:
            written = []
            for first in range(0, len(made), BATCH):
                files: list[tuple[Path, bytes]] = []
                with db.transaction():
                    for recipe in made[first:first + BATCH]:
                        artwork_id = artwork_id_for(recipe)
                        favourite = rng.random() < 0.02
                        favourites += favourite
                        record = records.upsert(ArtworkRecord(
                            artwork_id, recipe, image_relpath(artwork_id, recipe.created_at),
                            thumb_relpath(artwork_id), image.width, image.height, favourite,
                        ))
                        files += [(root / record.path, tiny_png(png.getvalue(), recipe)),
                                  (root / record.thumb, thumb.getvalue())]
                written.append(writer.submit(write_files, files))
            for batch in written:
                batch.result()
        finally:
            db.close()
    return Built(len(made), time.perf_counter() - start, favourites)


def write_files(files: list[tuple[Path, bytes]]) -> None:
    for path, data in files:
        with open(path, "wb") as f:
            f.write(data)


@dataclass(frozen=True)
class Case:
    """One timed request; `group` is the target it counts for ("page" or "search")."""

    group: str
    what: str
    run: Callable[[], object]


NEWEST = f"Gallery tab, newest {PAGE}"
RARE = f"Gallery tab, “{RARE_WORD}” (in about 1% of artworks)"
MISSING = f"Gallery tab, “{MISSING_WORD}” (in no prompt)"


def gallery_tab(store: GalleryStore, page: int = 1, **filters: object) -> Callable[[], object]:
    """What the Gallery tab asks for one page (see `Handlers.gallery_page`): the count, for "page N of M", then
    the page."""
    def view() -> object:
        total = store.count(**filters)
        last = max(1, -(-total // PAGE))
        return store.page(**filters, limit=PAGE, offset=(min(page, last) - 1) * PAGE)
    return view


def deep_page(records: int) -> int:
    return min(DEEP_PAGE, records // PAGE // 2)


def deep_view(records: int) -> str:
    return f"Gallery tab, page {deep_page(records):,}"


def page_cases(store: GalleryStore, records: int) -> list[Case]:
    deep = deep_page(records)
    seen = store.page(owner=OWNER, limit=1, offset=PAGE * deep - 1)[0]  # the API's cursor after that page
    gan_pages = -(-store.count(owner=OWNER, pipeline="gan") // PAGE)
    views: list[tuple[str, Callable[[], object]]] = [
        (NEWEST, gallery_tab(store, owner=OWNER)),
        (deep_view(records), gallery_tab(store, deep, owner=OWNER)),
        (f"newest {PAGE}, no filter (page only)", lambda: store.page(limit=PAGE)),
        (f"page {deep:,}, no filter (page only: offset {PAGE * (deep - 1):,})",
         lambda: store.page(limit=PAGE, offset=PAGE * (deep - 1))),
        (f"API: {PAGE} after a cursor at page {deep:,}",
         lambda: store.page(owner=OWNER, limit=PAGE, before=(seen.created_at, seen.id))),
        ("count, no filter", lambda: store.count()),
        ("count, one user's", lambda: store.count(owner=OWNER)),
        ("Gallery tab, generator text_to_image", gallery_tab(store, owner=OWNER, pipeline="text_to_image")),
        ("Gallery tab, generator gan", gallery_tab(store, owner=OWNER, pipeline="gan")),
        (f"Gallery tab, generator gan, its last page ({gan_pages})",
         gallery_tab(store, gan_pages, owner=OWNER, pipeline="gan")),
        ("Gallery tab, model candy", gallery_tab(store, owner=OWNER, model="candy")),
        ("Gallery tab, generator text_to_image + model sd-turbo",
         gallery_tab(store, owner=OWNER, pipeline="text_to_image", model="stabilityai/sd-turbo")),
        ("Gallery tab, favourites", gallery_tab(store, owner=OWNER, favourite=True)),
        ("Gallery tab, favourites of text_to_image",
         gallery_tab(store, owner=OWNER, pipeline="text_to_image", favourite=True)),
        ("shared gallery, generator gan", gallery_tab(store, pipeline="gan")),
        ("shared gallery, model candy", gallery_tab(store, model="candy")),
        ("shared gallery, favourites", gallery_tab(store, favourite=True)),
    ]
    return [Case("page", what, run) for what, run in views]


def search_cases(store: GalleryStore) -> list[Case]:
    searches: list[tuple[str, Callable[[], object]]] = [
        (RARE, gallery_tab(store, owner=OWNER, query=RARE_WORD)),
        (MISSING, gallery_tab(store, owner=OWNER, query=MISSING_WORD)),
        ("Gallery tab, “detailed” (a common word)", gallery_tab(store, owner=OWNER, query="detailed")),
        ("Gallery tab, “red fox wat” (as typed: prefix on the last word)",
         gallery_tab(store, owner=OWNER, query="red fox wat")),
        (f"Gallery tab, “{RARE_WORD}”, page 2", gallery_tab(store, 2, owner=OWNER, query=RARE_WORD)),
        (f"Gallery tab, “{RARE_WORD}” among text_to_image",
         gallery_tab(store, owner=OWNER, pipeline="text_to_image", query=RARE_WORD)),
        (f"shared gallery, “{RARE_WORD}”", gallery_tab(store, query=RARE_WORD)),
        (f"shared gallery, “{MISSING_WORD}”", gallery_tab(store, query=MISSING_WORD)),
    ]
    return [Case("search", what, run) for what, run in searches]


def startup(root: Path) -> Callable[[], ReconcileReport]:
    """Open the store and reconcile it, as `Services.start` does."""
    def run() -> ReconcileReport:
        with GalleryStore(root) as store:
            return store.reconcile()
    return run


@dataclass(frozen=True)
class Repair:
    """A reconcile after damage of a known size: what it reported against what was done to the gallery."""

    seconds: float
    report: ReconcileReport
    expected: ReconcileReport


def damage_and_repair(root: Path, each: int = 20, seed: int = 1) -> Repair:
    """Delete `each` PNGs (records left behind), `each` records (files left), `each` thumbnails, and leave a few
    old temp files; then time one start, whose reconcile should undo exactly that."""
    temps, old = 5, time.time() - 3600
    with GalleryStore(root) as store:
        positions = random.Random(seed).sample(range(store.count()), 3 * each)
        chosen = [store.page(limit=1, offset=position)[0] for position in positions]
        for artwork in chosen[:each]:
            artwork.path.unlink()
        for artwork in chosen[2 * each:]:
            artwork.thumb_path.unlink()
        for i, artwork in enumerate(chosen[:temps]):  # as if a rewrite of them had been interrupted
            temp = artwork.path.with_name(f".{artwork.path.name}.{i:012x}.tmp")
            temp.write_bytes(b"\x89PNG half")
            os.utime(temp, (old, old))
    db = Database(root / DB_NAME, MIGRATIONS)  # rows lost behind the store's back, as after a crash
    try:
        for artwork in chosen[each:2 * each]:
            GalleryRecords(db).delete(artwork.id)
    finally:
        db.close()
    quiet = logging.getLogger("studio.gallery")
    level, start = quiet.level, time.perf_counter()
    quiet.setLevel(logging.ERROR)  # its warnings name each repair, as they should; not this report's business
    try:
        report = startup(root)()
    finally:
        quiet.setLevel(level)
    return Repair(time.perf_counter() - start, report, ReconcileReport(each, each, each, temps))


@dataclass(frozen=True)
class Measured:
    """Everything one run measured, for the suite's lines and the report."""

    built: Built
    runs: int
    db_mb: float
    upgrade_s: float  # opening the gallery the first time: migrating it from the first release's schema
    first_reconcile_s: float
    cases: list[Case]
    ms: dict[str, float]
    matches: dict[str, int]
    reconcile_s: float
    repair: Repair

    def slowest(self, group: str) -> Case:
        return max((c for c in self.cases if c.group == group), key=lambda c: self.ms[c.what])


def measure_gallery(quick: bool) -> Measured:
    runs = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="atelier-bench-gallery-") as folder:
        root = Path(folder) / "gallery"
        built = build_gallery(root, QUICK_RECORDS if quick else RECORDS)
        start = time.perf_counter()
        with GalleryStore(root) as store:
            upgraded = time.perf_counter()
            store.reconcile()
        upgrade_s, first_reconcile_s = upgraded - start, time.perf_counter() - upgraded
        with GalleryStore(root) as store:
            cases = page_cases(store, built.records) + search_cases(store)
            ms = {case.what: measure(case.what, case.run, runs=runs).seconds * 1000 for case in cases}
            matches = {word: store.count(owner=OWNER, query=word) for word in (RARE_WORD, MISSING_WORD, "detailed")}
        reconcile_s = measure("startup", startup(root), runs=max(3, runs // 3)).seconds
        repair = damage_and_repair(root)
        db_mb = (root / DB_NAME).stat().st_size / 1e6
    return Measured(built, runs, db_mb, upgrade_s, first_reconcile_s, cases, ms, matches, reconcile_s, repair)


def summary(m: Measured) -> list[Row]:
    page, search = m.slowest("page"), m.slowest("search")
    n = f"{m.built.records:,} artworks"
    return [
        Row(f"Gallery page of {PAGE}, {n}", "—",
            f"newest {m.ms[NEWEST]:.1f} ms, page {deep_page(m.built.records):,} "
            f"{m.ms[deep_view(m.built.records)]:.1f} ms; slowest of "
            f"{sum(c.group == 'page' for c in m.cases)} views {m.ms[page.what]:.1f} ms", f"≤ {TARGET_PAGE_MS:.0f} ms",
            m.ms[page.what] <= TARGET_PAGE_MS, None,
            f"count + page, as the Gallery tab asks; the slowest view: {page.what}"),
        Row(f"Gallery prompt search, {n}", "—",
            f"1% word {m.ms[RARE]:.1f} ms, no match {m.ms[MISSING]:.1f} ms; slowest {m.ms[search.what]:.1f} ms",
            f"≤ {TARGET_SEARCH_MS:.0f} ms", m.ms[search.what] <= TARGET_SEARCH_MS, None,
            f"FTS5; count + page, as the Gallery tab asks; the slowest search: {search.what}"),
        Row(f"Gallery startup reconcile, {n}", "—", f"{m.reconcile_s:.2f} s (open + reconcile, nothing to repair)",
            f"≤ {TARGET_RECONCILE_S:.0f} s", m.reconcile_s <= TARGET_RECONCILE_S, None,
            f"{m.repair.seconds:.2f} s with {sum(dataclasses.astuple(m.repair.expected))} repairs to make; with the "
            "OS file cache warm (a first start after a reboot also reads the folders and the index from disk)"),
    ]


def report(m: Measured, rows: list[Row]) -> str:
    verdict = {True: "met", False: "NOT met", None: "reported"}
    built, repair = m.built, m.repair
    lines = [
        f"# Gallery with {built.records:,} artworks", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, SQLite "
        f"{sqlite3.sqlite_version}. The gallery: {built.records:,} records ({built.favourites:,} favourites), as many "
        f"PNGs and WebP thumbnails, gallery.db {m.db_mb:.0f} MB; built in {built.seconds:.0f} s. Every artwork is the "
        f"local user's (a studio without logins); “shared gallery” is the same gallery with no owner filter, as "
        f"`--shared-gallery` shows it. Times are medians of {m.runs} runs after one warm-up.", "",
        "| what | result | target | |", "|---|---|---|---|",
        *(f"| {r.what} | {r.result} | {r.target} | {verdict[r.met]} |" for r in rows), "",
        "## Pages", "",
        "“Gallery tab” is what the tab asks for one page: the count (for “page N of M”) and the page of 48.", "",
        "| view | ms |", "|---|---|",
        *(f"| {c.what} | {m.ms[c.what]:.1f} |" for c in m.cases if c.group == "page"), "",
        "## Prompt search", "",
        f"FTS5 over prompt, negative prompt and model; the last word is a prefix. “{RARE_WORD}” is in "
        f"{m.matches[RARE_WORD]:,} artworks, “{MISSING_WORD}” in {m.matches[MISSING_WORD]:,}, “detailed” in "
        f"{m.matches['detailed']:,}.", "",
        "| search | ms |", "|---|---|",
        *(f"| {c.what} | {m.ms[c.what]:.1f} |" for c in m.cases if c.group == "search"), "",
        "## Startup reconcile", "",
        f"- first start: {m.upgrade_s:.2f} s to upgrade gallery.db from the first release's schema (once), then "
        f"{m.first_reconcile_s:.2f} s to reconcile; median of later starts (open + reconcile): {m.reconcile_s:.2f} s",
        f"- after deleting {repair.expected.removed} PNGs, {repair.expected.indexed} records and "
        f"{repair.expected.thumbnails} thumbnails and leaving {repair.expected.temp_files} old temp files: "
        f"{repair.seconds:.2f} s; reported {_counts(repair.report)}, expected {_counts(repair.expected)}"
        f"{'' if repair.report == repair.expected else ' — MISMATCH'}",
        "- the OS file cache is warm: the gallery was just written. A first start after a reboot also reads the "
        "folders' entries and the records' index from disk.",
    ]
    return "\n".join(lines) + "\n"


def _counts(r: ReconcileReport) -> str:
    return f"{r.removed} removed, {r.indexed} re-indexed, {r.thumbnails} thumbnails rebuilt, {r.temp_files} temp files"


def rows(quick: bool) -> list[Row]:
    """The suite's three lines (page, search, reconcile); also writes the detailed report."""
    measured = measure_gallery(quick)
    lines = summary(measured)
    write_report("gallery", report(measured, lines))
    return lines


def main() -> None:
    rows(parse_quick(__doc__, f"{QUICK_RECORDS:,} artworks, 5 runs per figure",
                     f"{RECORDS:,} artworks, 15 runs per figure"))


if __name__ == "__main__":
    main()
