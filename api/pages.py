"""The few HTML pages a person sees: the verification link's landing page and its result.

A mail scanner (Outlook Safe Links and others) fetches every link in a message, so the
link's ``GET`` only shows a button; the button's form ``POST``s the token, and only that
verifies. The pages load nothing from anywhere (a strict CSP) and send no referrer, so
the token in the address goes nowhere else.
"""

from __future__ import annotations

import html
from string import Template

from starlette.responses import Response

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}

_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem;
       color: #1f2328; }
button { font-size: 1rem; padding: .6rem 1.2rem; border-radius: .4rem; border: 0;
         background: #1f6feb; color: #fff; cursor: pointer; }
</style>
</head>
<body>
<h1>$title</h1>
$content
</body>
</html>
""")


def page(status: int, title: str, content_html: str) -> Response:
    body = _PAGE.substitute(title=html.escape(title), content=content_html)
    return Response(body, status, _HEADERS, media_type="text/html; charset=utf-8")


def confirm_page(token: str) -> Response:
    form = (
        "<p>Confirm that this address is yours.</p>\n"
        '<form method="post" action="/verify-email">\n'
        f'<input type="hidden" name="token" value="{html.escape(token, quote=True)}">\n'
        '<button type="submit">Verify my email address</button>\n'
        "</form>"
    )
    return page(200, "Verify your email address", form)


def verified_page(email: str) -> Response:
    text = f"<p>Thank you: <strong>{html.escape(email)}</strong> is verified.</p>"
    return page(200, "Email address verified", text)


def pending_page() -> Response:
    return page(202, "Almost there", "<p>Your address is being verified; reload in a moment.</p>")


def invalid_page() -> Response:
    text = "<p>This link is invalid or has expired. Ask for a new one from the sign-up page.</p>"
    return page(400, "Link not valid", text)
