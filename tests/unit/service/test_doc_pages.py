"""The docs as web pages: which files are served, how their links are resolved, and an
installation without docs/."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette

from service import doc_pages


def test_the_repository_docs_and_their_pictures_are_served():
    served = doc_pages.served_files()
    assert {"README.md", "loadtest/README.md", "docs/selection.md",
            "docs/frontier_efficientnet_lite.png"} <= set(served)
    assert not any(name.endswith(".py") for name in served)


def test_links_to_served_files_stay_links_and_others_become_repository_paths():
    served = frozenset({"README.md", "docs/a.md", "docs/plot.png"})
    html = doc_pages.render_document(
        "See [a](a.md), [back](../README.md), [code](../service/x.py), [web](https://x.org/) "
        "and [here](#part).\n\n![plot](plot.png)\n\n| k | v |\n|---|---|\n| 1 | 2 |\n\n"
        "<script>alert(1)</script>", "docs/b.md", served)
    assert '<a href="a.md">a</a>' in html and '<a href="../README.md">back</a>' in html
    assert 'title="in the repository: service/x.py">code</span>' in html
    assert '<a href="https://x.org/">web</a>' in html and '<a href="#part">here</a>' in html
    assert '<img src="plot.png" alt="plot" />' in html and "<table>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_title_is_the_first_heading():
    assert doc_pages.title_of("intro\n# The title\n## later", "x.md") == "The title"
    assert doc_pages.title_of("no heading", "x.md") == "x.md"


async def test_an_installation_without_docs_says_so(tmp_path):
    (tmp_path / "README.md").write_text("# Readme\n\nsee [docs](docs/a.md)\n")
    app = Starlette(routes=doc_pages.routes("/ui", root=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        index = await client.get("/ui/docs/")
        assert index.status_code == 200
        assert "not part of this installation" in index.text and "/ui/README.md" in index.text
        readme = await client.get("/ui/README.md")
        assert "<h1>Readme</h1>" in readme.text
        assert 'class="repo-path" title="in the repository: docs/a.md"' in readme.text
        assert (await client.get("/ui/docs/a.md")).status_code == 404
