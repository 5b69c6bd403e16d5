"""The mailer's pure parts: SMTP_URL's forms, the message it composes, its metric labels."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from domain import tokens
from domain.ids import uuid7
from observability import metrics
from storage import events
from workers.mailer.messages import SUBJECT, Sender, Verification, compose, verify_link
from workers.mailer.transport import SmtpServer, parse_smtp_url

MAIL_FROM = "Signup service <no-reply@example.com>"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 25, None, None, False, None)),
        ("smtp://127.0.0.1:1025", SmtpServer("127.0.0.1", 1025, None, None, False, None)),
        (
            "smtp+starttls://mail.example.com",
            SmtpServer("mail.example.com", 587, None, None, False, True),
        ),
        (
            "smtp+starttls://mail.example.com:2587",
            SmtpServer("mail.example.com", 2587, None, None, False, True),
        ),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, None, None, True, False)),
        (
            "smtps://ann:secret@mail.example.com:2465",
            SmtpServer("mail.example.com", 2465, "ann", "secret", True, False),
        ),
        (
            "smtp://no-reply%40example.com:p%3Ass%2Fw%40rd%25@mail.example.com:587",
            SmtpServer("mail.example.com", 587, "no-reply@example.com", "p:ss/w@rd%", False, None),
        ),
        (
            "smtp://apikey@mail.example.com",
            SmtpServer("mail.example.com", 25, "apikey", None, False, None),
        ),
    ],
    ids=[
        "smtp",
        "smtp-port",
        "starttls",
        "starttls-port",
        "smtps",
        "smtps-login",
        "escaped-login",
        "user-only",
    ],
)
def test_smtp_urls(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "mail.example.com",
        "http://mail.example.com",
        "https://mail.example.com",
        "smtp+ssl://mail.example.com",
        "lmtp://mail.example.com",
        "smtp://",
        "smtp://:25",
        "smtp:///path",
        "smtp://mail.example.com:port",
        "smtp://mail.example.com:70000",
    ],
)
def test_smtp_urls_it_cannot_use(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (the message varies: urllib's or ours)
        parse_smtp_url(url)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.hrefs += [value for name, value in attrs if tag == "a" and name == "href" and value]


def _verification(greeting: str, to: str = "ann@example.com") -> Verification:
    token = tokens.issue(
        "unit-test-secret-key-unit-test-secret", uuid7(), to, now=0, ttl_seconds=60
    )
    return Verification(
        message_id="<01a233ed-4bd9-7002-8280-caeccfadfc46@signup.signup-service>",
        to=to,
        greeting=greeting,
        link=verify_link("https://example.com/", token),
        hours=24,
    )


def _message(v: Verification) -> EmailMessage:
    """The composed bytes as a mail client reads them."""
    out = compose(Sender.parse(MAIL_FROM), v)
    message = email.message_from_bytes(out.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _parts(v: Verification) -> tuple[str, str]:
    message = _message(v)
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


def test_the_message_has_its_headers_and_both_parts() -> None:
    v = _verification("Ann")
    out = compose(Sender.parse(MAIL_FROM), v)
    message = _message(v)

    assert (out.sender, out.recipient, out.smtputf8) == ("no-reply@example.com", v.to, False)
    assert all(len(line) <= 998 for line in out.data.split(b"\r\n"))  # RFC 5322 limit
    assert b"\n" not in out.data.replace(b"\r\n", b"")  # CRLF line ends only
    assert message["From"] == MAIL_FROM
    assert message["To"] == "ann@example.com"
    assert message["Subject"] == SUBJECT
    assert message["Message-ID"] == v.message_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    text, html = _parts(v)
    for part in (text, html):
        assert "Hello Ann," in part
        assert "ann@example.com" in part
        assert "24 hours" in part


def test_the_html_part_escapes_the_greeting() -> None:
    greeting = "<script>alert('hi')</script> & \"Co\""
    text, html = _parts(_verification(greeting))

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;hi&#x27;)&lt;/script&gt; &amp; &quot;Co&quot;" in html
    assert f"Hello {greeting}," in text  # plain text is shown as it is: nothing to escape


def test_the_link_is_the_same_in_both_parts() -> None:
    v = _verification("Ann")
    text, html = _parts(v)
    links = _Links()
    links.feed(html)

    assert v.link.startswith("https://example.com/verify-email?token=")
    assert v.link in text
    assert links.hrefs == [v.link]
    assert v.link in html  # also as the text to paste


def test_the_link_quotes_the_token() -> None:
    assert verify_link("http://localhost:5000/", "a+b/c=") == (
        "http://localhost:5000/verify-email?token=a%2Bb%2Fc%3D"
    )


def test_the_mailers_event_labels_are_the_event_types() -> None:
    assert tuple(events.EVENT_TYPES) == metrics.EVENT_TYPES


def test_a_non_ascii_sender_name_is_encoded_and_the_text_reads_back() -> None:
    sender = Sender.parse("Zoë Service <no-reply@example.com>")
    v = _verification("Zoë")
    out = compose(sender, v)

    assert out.data.isascii()  # the name is RFC 2047-encoded, the bodies base64
    message = email.message_from_bytes(out.data, policy=email.policy.default)
    assert message["From"] == "Zoë Service <no-reply@example.com>"
    assert "Hello Zoë," in out.text


def test_an_internationalised_recipient_asks_for_smtputf8() -> None:
    out = compose(Sender.parse(MAIL_FROM), _verification("Ann", to="anné@bücher.example"))

    assert out.smtputf8
    assert "To: anné@bücher.example".encode() in out.data


@pytest.mark.parametrize("bad", ["no address", "Evil <a@b.example>\r\nBcc: x@y.example"])
def test_a_bad_mail_from_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="MAIL_FROM"):
        Sender.parse(bad)
