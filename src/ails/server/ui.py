"""The chat page of ``ails serve``: ``/`` and ``/static/<file>``.

The files ship inside the package (``ails/server/static``) and are read through
``importlib.resources``, so the page works from a wheel, a zip or a source tree,
offline, with no build step. They are read once when the routes are added and
served from memory with an ETag, so a reload costs a 304.

Every response carries ``X-Content-Type-Options: nosniff``; the page itself a
strict Content-Security-Policy: scripts, styles and connections only from this
origin, no inline script, no plugins, no framing. The page renders model
output, which is untrusted, through marked and DOMPurify (see ``docs/ui.md``);
the CSP is the second wall should anything slip through.

The gateway mounts these routes unless ``--no-ui`` is given. They need no API
key: the page holds no secret, and it asks for the key when the API says 401.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ails.server.middleware import RouteTarget

__all__ = ["CONTENT_SECURITY_POLICY", "add_ui_routes", "load_static_files"]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}

# Not cached without asking: file names carry no version, so after an upgrade a
# browser must not mix an old app.js with a new index.html. With the ETag a
# revalidation is a 304 without a body.
_CACHE_CONTROL = "no-cache"

_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class StaticFile:
    """One file of the page, held in memory."""

    name: str
    body: bytes
    content_type: str
    etag: str


def load_static_files() -> dict[str, StaticFile]:
    """Read every file of ``ails/server/static`` (flat: subfolders are not served)."""
    folder = resources.files("ails").joinpath("server").joinpath("static")
    files: dict[str, StaticFile] = {}
    for entry in folder.iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        content_type = _CONTENT_TYPES.get(suffix.lower())
        if content_type is None:  # a stray file (a source map, an editor backup): not served
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[entry.name] = StaticFile(entry.name, body, content_type, etag)
    if "index.html" not in files:
        raise RuntimeError("ails/server/static/index.html is missing from the installed package")
    return files


def _not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if header is None:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in candidates or "*" in candidates


def _respond(request: web.Request, file: StaticFile, extra: dict[str, str]) -> web.Response:
    headers = {
        "ETag": file.etag,
        "Cache-Control": _CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        **extra,
    }
    if _not_modified(request, file.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = file.content_type
    return web.Response(body=file.body, headers=headers)


def add_ui_routes(app: RouteTarget) -> None:
    """Serve the chat page at ``/`` and its files at ``/static/{name}`` (GET and HEAD)."""
    files = load_static_files()
    index = files["index.html"]

    async def page(request: web.Request) -> web.Response:
        return _respond(request, index, _PAGE_HEADERS)

    async def static(request: web.Request) -> web.Response:
        # Only names read at startup are served: no path from the request reaches the disk.
        file = files.get(request.match_info["name"])
        if file is None:
            raise web.HTTPNotFound(text="no such file\n")
        extra = _PAGE_HEADERS if file.name.endswith(".html") else {}
        return _respond(request, file, extra)

    app.router.add_get("/", page, name="ui-index")
    app.router.add_get("/static/{name}", static, name="ui-static")
