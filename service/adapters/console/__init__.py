"""The operator console: `GET /` (what an operator asks first) and `GET /certify` (the certification
answers), server-rendered HTML for a shared screen.

- read-only: GET (and HEAD) only; nothing on a page changes anything;
- self-contained: one inline stylesheet, no script, no font, no image, nothing fetched from elsewhere
  (clusters often have no internet), pinned by a Content-Security-Policy that allows that stylesheet
  alone, by its hash;
- refreshed by the browser (`<meta http-equiv="refresh">`), every `REFRESH_SECONDS` on `/`;
- no grade, name or secret: counts, statuses, times, run ids, request paths and X-Trace-Ids only;
- never routed by the Ingress: reached by `kubectl port-forward` (k8s/base/ingress.yaml routes the
  webhook path alone).

Templates (Jinja2, autoescaped, through aiohttp-jinja2) are package data under `templates/`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup

from service import __version__
from service.adapters.console.views import certification, overview
from service.adapters.ops_http import OPS

# Seconds between the browser's reloads of `/`: a screen share sees a fault pass within a few seconds.
REFRESH_SECONDS: Final = 5
# `/certify` changes only as runs end; a long document is read, not watched.
CERTIFY_REFRESH_SECONDS: Final = 30


@dataclass(frozen=True, slots=True)
class Assets:
    """The inline stylesheet and the headers that allow it (and nothing else)."""

    css: Markup
    headers: dict[str, str]


ASSETS: Final = web.AppKey("console_assets", Assets)


def _assets() -> Assets:
    """Read the stylesheet once and pin it in the Content-Security-Policy by its SHA-256."""
    css = (resources.files(__name__) / "templates" / "console.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    return Assets(Markup(css), headers)  # noqa: S704 - our own package file, never user input


def _render(request: web.Request, template: str, context: dict[str, Any], refresh: int) -> web.Response:
    assets = request.app[ASSETS]
    page = {**context, "css": assets.css, "refresh": refresh, "version": __version__}
    response = aiohttp_jinja2.render_template(template, request, page)
    response.headers.update(assets.headers)
    return response


async def index(request: web.Request) -> web.Response:
    """`GET /`: readiness, pause, breaker, runs, backlogs and the latest WISEflow requests."""
    return _render(request, "index.html", await overview(request.app[OPS]), REFRESH_SECONDS)


async def certify(request: web.Request) -> web.Response:
    """`GET /certify`: the `certify` document as HTML (webhook events as configured: no WISEflow call)."""
    return _render(request, "certify.html", await certification(request.app[OPS]), CERTIFY_REFRESH_SECONDS)


def add_console_routes(app: web.Application) -> None:
    """Set up the templates (autoescaped) and register `GET /` and `GET /certify`."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader(__name__, "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name fails the page (and its test), not blanks it
        default_helpers=False,
    )
    app[ASSETS] = _assets()
    app.router.add_get("/", index)
    app.router.add_get("/certify", certify)
