"""The project's docs as web pages, for the front door: README.md, loadtest/README.md and
docs/*.md rendered from markdown (CommonMark and tables, raw HTML left as text), with the
pictures they show.

Each file is served at `/ui/<its path in the repository>`, so the docs' own relative links
(`docs/selection.md`, `../README.md`, `frontier_efficientnet_lite.png`) work unchanged; a link
to a file that is not served (source code, say) is shown as its repository path instead of a
link that would answer 404. Files are listed once, when the app is built, from the checkout
the service runs from; an installation without docs/ (the Docker image leaves it out) gets
an index that says so.
"""

from __future__ import annotations

import functools
import html
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route

REPOSITORY = Path(__file__).resolve().parent.parent
DOCS_DIR = "docs"
LOOSE_DOCUMENTS = ("README.md", "loadtest/README.md")
PICTURES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg"}


def served_files(root: Path = REPOSITORY) -> list[str]:
    """Repository paths of the documents and pictures served, those present under `root`."""
    found = [name for name in LOOSE_DOCUMENTS if (root / name).is_file()]
    docs = root / DOCS_DIR
    if docs.is_dir():
        found += sorted(f"{DOCS_DIR}/{p.name}" for p in docs.iterdir()
                        if p.is_file() and (p.suffix == ".md" or p.suffix in PICTURES))
    return found


def title_of(markdown: str, fallback: str) -> str:
    match = re.search(r"^#\s+(.+)$", markdown, re.MULTILINE)
    return match.group(1).strip() if match else fallback


def _link_target(document: str, href: str) -> str | None:
    """The repository path a relative link points to; None for URLs and in-page anchors."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(document), parts.path))


@functools.cache
def _renderer(served: frozenset[str]) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def link_open(renderer, tokens, idx, options, env):
        href = tokens[idx].attrGet("href") or ""
        target = _link_target(env["document"], href)
        dropped = target is not None and target not in served
        env.setdefault("links", []).append(dropped)
        if dropped:
            return f'<span class="repo-path" title="in the repository: {html.escape(target)}">'
        return renderer.renderToken(tokens, idx, options, env)

    def link_close(renderer, tokens, idx, options, env):
        if env["links"].pop():
            return "</span>"
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    return md


def render_document(markdown: str, document: str, served: frozenset[str]) -> str:
    """The markdown of `document` (its repository path) as HTML, links resolved as above."""
    return _renderer(served).render(markdown, {"document": document})


def page_html(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)} · ConvZoo</title><link rel=\"icon\" href=\"data:,\">"
        "<link rel=\"stylesheet\" href=\"/ui/app.css\"></head>"
        "<body class=\"doc\"><nav class=\"doc-nav\"><a href=\"/\">ConvZoo</a> · "
        "<a href=\"/ui/docs/\">docs</a> · <a href=\"/ui/api.html\">API reference</a></nav>"
        f"<main class=\"doc-body\">{body}</main></body></html>")


def routes(prefix: str = "/ui", root: Path = REPOSITORY) -> list[Route]:
    """One route per served file under `prefix`, and the docs index at `prefix`/docs/."""
    served = served_files(root)
    documents = [name for name in served if name.endswith(".md")]
    titles = {name: title_of((root / name).read_text(encoding="utf-8"), name)
              for name in documents}

    async def index(request: Request) -> HTMLResponse:
        items = "".join(f'<li><a href="{prefix}/{name}">{html.escape(titles[name])}</a> '
                        f'<span class="repo-path">{name}</span></li>' for name in documents)
        missing = ("" if any(n.startswith(DOCS_DIR + "/") for n in documents) else
                   "<p>The <code>docs/</code> folder is not part of this installation (the "
                   "Docker image leaves it out): read it in the repository.</p>")
        return HTMLResponse(page_html("Documentation",
                                      f"<h1>Documentation</h1>{missing}<ul>{items}</ul>"))

    def document_route(name: str) -> Route:
        path = root / name

        async def document(request: Request) -> Response:
            if name.endswith(".md"):
                body = render_document(path.read_text(encoding="utf-8"), name,
                                       frozenset(served))
                return HTMLResponse(page_html(titles[name], body))
            return FileResponse(path, media_type=PICTURES[path.suffix])

        return Route(f"{prefix}/{name}", document, methods=["GET", "HEAD"])

    return [Route(f"{prefix}/{DOCS_DIR}/", index, methods=["GET", "HEAD"]),
            *(document_route(name) for name in served)]
