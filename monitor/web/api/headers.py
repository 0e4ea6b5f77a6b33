"""Browser-facing hardening of every HTTP response: security headers and the API docs switch.

Every response gets `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` (no page may be
framed: clickjacking), `Referrer-Policy: same-origin` and a Content-Security-Policy that lets
the pages load scripts, styles, media and the websocket from this origin only. Inline styles
stay allowed (the replay timeline positions its regions with `style` attributes); inline
scripts, `eval`, plugins, foreign forms and `<base>` do not.

The interactive docs (`/api/docs`) load Swagger UI from a CDN, so they get no CSP; they (and
`/api/openapi.json`) exist only when `api.docs` is on - by default only on a loopback API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from config.settings import ApiSettings, is_loopback

DOCS_URL = "/api/docs"
OPENAPI_URL = "/api/openapi.json"
CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def docs_enabled(api: ApiSettings) -> bool:
    """`api.docs`, or when unset: only when the API listens on loopback."""
    return api.docs if api.docs is not None else is_loopback(api.host)


def add_security_headers(app: FastAPI) -> None:
    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.url.path != DOCS_URL:
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response
