"""Gradio's file route over real HTTP: a user's browser gets that user's artwork files and nothing else."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx

from studio.accounts import add_user
from studio.gallery.inputs import MAX_INPUT_BYTES
from studio.ui.app import sweep_upload_cache
from tests.conftest import make_config, wait_finished
from tests.ui.serving import serve_http


def browser(url: str, user: str, password: str) -> httpx.Client:
    """A client logged in through the UI's login page, holding its session cookie as a browser does."""
    client = httpx.Client(base_url=url, timeout=60)
    assert client.post("login", data={"username": user, "password": password}).status_code == 200
    return client


def test_artwork_files_are_served_to_their_owner_only(tmp_path: Path) -> None:
    logins = tmp_path / "logins"
    add_user(logins, "ann", "apple-pie-9")
    add_user(logins, "bob", "blue-moon-9")
    with serve_http(make_config(tmp_path / "data", auth_file=logins)) as (services, url), \
            closing(browser(url, "ann", "apple-pie-9")) as ann, closing(browser(url, "bob", "blue-moon-9")) as bob:
        job = services.generation.submit("pattern", "pattern-v1", {"prompt": "ann's tide"}, 3, owner="ann")
        artwork = services.gallery.get(wait_finished(services, job.id).image_ids[0])
        root = services.gallery.root

        def fetch(client: httpx.Client, path: str) -> int:
            return client.get(f"gradio_api/file={path}").status_code

        assert fetch(ann, str(artwork.path)) == 200 and fetch(ann, str(artwork.thumb_path)) == 200
        assert ann.head(f"gradio_api/file={artwork.path}").status_code == 200
        assert fetch(bob, str(artwork.path)) == 404 and fetch(bob, str(artwork.thumb_path)) == 404
        assert httpx.get(f"{url}gradio_api/file={artwork.path}").status_code in (401, 404)  # no login at all

        # another user's artwork however the path is spelled: a scheme-like first part, dots the server decodes,
        # the older route; a NUL byte and a remote URL are refused too, not a server error or a proxied fetch
        up = "%2e%2e/" * (len(Path.cwd().parts) + 2)  # httpx would fold a literal `..`; the server decodes these
        month = artwork.path.parent
        spellings = [f"file=http:/{up}{artwork.path}", f"file=https:/{up}{artwork.path}",
                     f"file=http:{up}{artwork.path}", f"file={month}/%2e%2e/{month.name}/{artwork.path.name}",
                     f"file/{artwork.path}",
                     f"file/http:/{up}{artwork.path}", f"file=http:/{up}{artwork.thumb_path}"]
        for spelling in spellings:
            assert ann.get(f"gradio_api/{spelling}").status_code == 200, spelling
            assert bob.get(f"gradio_api/{spelling}").status_code == 404, spelling
        assert bob.get("gradio_api/file=%00").status_code == 404
        assert bob.get(f"gradio_api/file={artwork.path}%00").status_code == 404
        assert bob.get("gradio_api/file=http://127.0.0.1:1/x.png").status_code == 404

        # the store's database and anything that is not an artwork's file: refused, however it is spelled
        (root / "images" / "notes.png").write_bytes(artwork.path.read_bytes())
        os.symlink(root / "gallery.db", root / "images" / f"{artwork.id}.gif")
        tricks = [str(root / "gallery.db"), f"{root}/images/../gallery.db", quote(f"{root}/images/../gallery.db"),
                  f"{root}/images/{artwork.id}.gif", f"{root}/images/notes.png", f"{root}/images//../../jobs.db",
                  str(root.parent / "logins"), "/etc/passwd"]
        for trick in tricks:
            assert fetch(ann, trick) in (403, 404), trick


def test_without_logins_the_local_user_sees_the_gallery_and_huge_uploads_are_refused(tmp_path: Path) -> None:
    with serve_http(make_config(tmp_path / "data")) as (services, url):
        job = services.generation.submit("pattern", "pattern-v1", {}, 1)
        artwork = services.gallery.get(wait_finished(services, job.id).image_ids[0])
        assert httpx.get(f"{url}gradio_api/file={artwork.path}", timeout=30).status_code == 200
        assert httpx.get(f"{url}gradio_api/file={services.gallery.root / 'gallery.db'}", timeout=30).status_code \
            in (403, 404)
        small = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.png", artwork.path.read_bytes())},
                           timeout=60)
        # kept in a data dir's cache (the first studio's of this process: Gradio reads it once), not in a
        # world-readable system temp dir
        assert small.status_code == 200 and Path(small.json()[0]).parent.parent.name == "cache"
        huge = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.png", b"\0" * (MAX_INPUT_BYTES + 1))},
                          timeout=60)
        assert huge.status_code == 413


def test_what_broken_and_empty_uploads_leave_in_the_cache_is_swept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "c6b0").mkdir(parents=True)
    empty, kept, broken, fresh = cache / "c6b0" / "big.png", cache / "c6b0" / "a.png", cache / "tmpab12", \
        cache / "tmpcd34"
    empty.write_bytes(b"")
    kept.write_bytes(b"\x89PNG")
    broken.write_bytes(b"abc")  # a multipart upload that broke off leaves its temporary file at the top
    fresh.write_bytes(b"")  # may be an upload in progress
    for path in (empty, kept, broken):
        os.utime(path, (1, 1))
    assert sweep_upload_cache(cache) == 2
    assert not empty.exists() and not broken.exists() and kept.exists() and fresh.exists()
