"""The reviewer's console: static files shipped with the predict function (no CDN, no build step), served by
`GET /console` and its two assets with a strict Content-Security-Policy.

The page asks for an API key and keeps it in sessionStorage only; every call it makes goes to this same API with
that key, so the routes' roles decide what it may show. Its script inserts every text with `textContent` and never
builds HTML from data, and the policy allows no inline script, no other origin and no framing, so an item that
holds `<script>` or an `onerror=` attribute is shown as text, never run. Files are read on first use and kept.
"""

from __future__ import annotations

from functools import cache
from http import HTTPStatus
from pathlib import Path

from aws_lambda_powertools.event_handler import Response

ASSETS = Path(__file__).parent / "console"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def asset(name: str) -> Response[str]:
    """One of the console's files, with its type and the security headers."""
    return Response(
        status_code=HTTPStatus.OK,
        content_type=CONTENT_TYPES[Path(name).suffix],
        body=_read(name),
        headers=HEADERS,
    )
