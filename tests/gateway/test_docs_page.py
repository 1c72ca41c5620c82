"""``/docs`` works without the internet: the page names only the gateway's own URLs, and the
gateway serves Swagger UI's files from the package (with their license)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway_support import gateway_app, settings_for

from promptline.gateway.app import SWAGGER_UI_DIR

CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


async def test_the_docs_page_loads_swagger_ui_from_the_gateway_itself(tmp_path: Path) -> None:
    async with gateway_app(settings_for(tmp_path / "home")) as (_app, client):
        page = await client.get("/docs")
        assert page.status_code == 200
        html = page.text
        references = re.findall(r'(?:src|href)="([^"]*)"', html) + re.findall(
            r"url: '([^']*)'", html
        )
        assets = {}
        for url in references:
            answer = await client.get(url)
            assert answer.status_code == 200, url
            assets[url] = answer

    assert "http://" not in html
    assert "https://" not in html
    assert all(url.startswith("/") and not url.startswith("//") for url in references)
    assert sorted(references) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
        "/openapi.json",
    ]
    assert '"validatorUrl": null' in html  # the document is not sent to an online validator
    for url, answer in assets.items():
        if url.startswith("/docs/assets/"):
            name = url.rsplit("/", 1)[1]
            assert answer.content == (SWAGGER_UI_DIR / name).read_bytes()
            assert CONTENT_TYPES[Path(name).suffix] in answer.headers["content-type"]
    assert assets["/openapi.json"].json()["info"]["title"] == "PromptLine"


def test_swagger_ui_ships_with_its_license() -> None:
    assert "Apache License" in (SWAGGER_UI_DIR / "LICENSE").read_text(encoding="utf-8")
    assert (SWAGGER_UI_DIR / "NOTICE").is_file()
    assert (SWAGGER_UI_DIR / "swagger-ui-bundle.js.LICENSE.txt").is_file()
