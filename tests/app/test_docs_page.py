"""`/docs` as a browser loads it from the local API server: the page, then every file it names,
resolved against the page's own URL, with and without the trailing slash a browser often adds."""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from app import app
from chalicelib import wiring
from chalicelib.api import docs
from esdeploy.local.http_server import create_api_server
from esdeploy.local.processes import LOOPBACK

EXPECTED_TYPES = {".css": "text/css", ".js": "text/javascript", ".json": "application/json"}


@pytest.fixture
def base_url(memory_adapters: wiring.Adapters) -> Iterator[str]:
    running = create_api_server(app, LOOPBACK, 0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{running.server.server_address[1]}"
    running.shutdown()
    running.server.server_close()


class _Names(HTMLParser):
    """Every URL a browser would load or offer from the page: link href, script src, a href."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"link": "href", "script": "src", "a": "href"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def names_in(page: str) -> list[str]:
    parser = _Names()
    parser.feed(page)
    # Swagger UI fetches the document itself, from the `url` it is configured with.
    return parser.urls + re.findall(r'\burl:\s*"([^"]+)"', page)


def fetched_from(page_url: str) -> dict[str, Any]:
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    answers = {}
    for name in names_in(page.text):
        if urlsplit(name).scheme == "data":
            continue  # inline: nothing to fetch
        answers[name] = requests.get(urljoin(page_url, name), timeout=10)
    return answers


@pytest.mark.parametrize("page_path", ["/docs", "/docs/"])
def test_every_file_the_swagger_ui_page_names_loads(base_url: str, page_path: str) -> None:
    answers = fetched_from(base_url + page_path)
    assert {urlsplit(name).path.rsplit("/", 1)[-1] for name in answers} == {
        "swagger-ui.css", "swagger-ui-bundle.js", "openapi.json"
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, f"{name} from {page_path}: {answer.status_code} {answer.text[:200]}"
        suffix = name[name.rfind("."):]
        assert answer.headers["Content-Type"].startswith(EXPECTED_TYPES[suffix]), name
    assert answers[next(n for n in answers if n.endswith("openapi.json"))].json()["openapi"] == "3.1.0"


@pytest.mark.parametrize("page_path", ["/docs", "/docs/"])
def test_the_page_without_swagger_ui_links_the_document_that_is_there(
    base_url: str, page_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(docs, "_swagger_files", lambda: None)
    answers = fetched_from(base_url + page_path)
    assert [answer.json()["openapi"] for answer in answers.values()] == ["3.1.0"]


def test_the_browsers_own_favicon_request_is_not_an_error(base_url: str) -> None:
    """A browser asks for /favicon.ico by itself; 403 "Missing Authentication Token" was the one
    error in its console. No icon, and no error: 204."""
    answer = requests.get(base_url + "/favicon.ico", timeout=10)
    assert (answer.status_code, answer.content) == (204, b"")
