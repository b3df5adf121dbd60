"""Templates a batched HTTP provider merges itself: one body per request, a few values per recipient.

SendGrid, Mailgun and SES take up to 1,000 (SES: 50) recipients in one request when the body is a template with
substitution tags and each recipient brings its values. That is what makes tens of thousands of recipients a
second possible: the 13 KB body is sent once per batch, not once per recipient, and nothing is rendered here
per recipient but a handful of strings.

A variant qualifies when its parts use nothing but merge fields (``{{ contact.first_name }}``, with an optional
``| default("...")``) and the sender's values (``{{ unsubscribe_url }}``, ``{{ postal_address }}``); logic
(``{% if %}``, other filters) needs the full renderer, and such a variant goes out one recipient per request.
The result is the same as ``templates.CompiledVariant`` gives: the same tracked links, pixel, preheader and text
part, the same escaping, the same missing-field policy.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dispatch.templates import _BODY_END, _BODY_START, _HREF, MAX_HTML_BYTES, MissingPolicy, TemplateProblem
from dispatch.text_part import html_to_text

_TAG = re.compile(
    r"""\{\{\s*(?:(contact|account|campaign)\.([a-z_]+)|(unsubscribe_url|postal_address|open_url))"""
    r"""\s*(?:\|\s*default\(\s*(?:"([^"\\{}]*)"|'([^'\\{}]*)')\s*\))?\s*\}\}"""
)
_JINJA = re.compile(r"\{\{|\{%|\{#")
_NEWLINES = re.compile(r"\r\n|\r")
_PREHEADER = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">'


@dataclass(frozen=True, slots=True)
class Ref:
    """One value in a part: a merge field (scope.name), a sender value (scope None), or click link ``n``."""

    scope: str | None
    name: str
    default: str | None = None
    escape: bool = False  # HTML-escaped (the HTML part) or raw (subject, text, URLs)


Piece = str | Ref


def _as_jinja(source: str) -> str:
    """Jinja's own reading of a source: newlines as \n, one trailing newline dropped."""
    source = _NEWLINES.sub("\n", source)
    return source[:-1] if source.endswith("\n") else source


def _split(source: str, escape: bool) -> list[Piece] | None:
    pieces: list[Piece] = []
    at = 0
    for match in _TAG.finditer(source):
        literal = source[at : match.start()]
        if _JINJA.search(literal):
            return None
        pieces.append(literal)
        scope, name, sender_value = match.group(1), match.group(2), match.group(3)
        default = match.group(4) if match.group(4) is not None else match.group(5)
        pieces.append(Ref(scope, name or sender_value, default, escape))
        at = match.end()
    if _JINJA.search(source[at:]):
        return None
    pieces.append(source[at:])
    return [p for p in pieces if p != ""]


class MergeVariant:
    """A variant as a provider template: ``parts`` with tags where ``values`` puts per-recipient text."""

    def __init__(self, subject: str, preheader: str, html_body: str, text_body: str, *,
                 missing: MissingPolicy = "error", links_base: str = "") -> None:  # fmt: skip
        if len(html_body.encode("utf-8")) > MAX_HTML_BYTES:
            raise TemplateProblem("html", None, f"the HTML part is over {MAX_HTML_BYTES // 1024} KB")
        self.missing = missing
        #: with a links base, the message's links carry one token (``message_token``): the pixel and the links
        #: without merge fields (``/e/c/{token}/{n}``, n into ``constant_links``); unsubscribe has its own
        self.base = links_base
        self.links: list[list[Piece]] = []
        self.constant_links: list[str] = []
        html_pieces = self._html(html_body, _as_jinja(preheader))
        text = text_body if text_body.strip() else html_to_text(html_body)
        subject_pieces = _split(_as_jinja(subject), False)
        text_pieces = _split(_as_jinja(text), False)
        if html_pieces is None or subject_pieces is None or text_pieces is None:
            raise NotMergeable("the variant uses template logic: it is rendered per recipient")
        self.subject = subject_pieces
        self.parts = {"html": self._tokens(html_pieces), "text": self._tokens(text_pieces)}
        refs: dict[Ref, None] = {}
        for pieces in (*self.parts.values(), *self.links):
            refs.update((p, None) for p in pieces if isinstance(p, Ref))
        #: every per-recipient value the parts use, in a fixed order: tag ``pv{n}`` is ``self.refs[n]``
        self.refs = list(refs)

    def _html(self, source: str, preheader: str) -> list[Piece] | None:
        out: list[Piece] = []
        at = 0
        source = _NEWLINES.sub("\n", source)
        body_start = _BODY_START.search(source)
        insert_preheader = bool(preheader.strip())
        for match in _HREF.finditer(source):
            before = _split(source[at : match.start()], True)
            url = _split(match.group(3), False)
            if before is None or url is None:
                return None
            out += before
            out.append(match.group(1) + match.group(2))
            target = [html.unescape(p) if isinstance(p, str) else p for p in url]
            if self.base and all(isinstance(p, str) for p in target):
                self.constant_links.append("".join(str(p) for p in target))
                out += [html.escape(f"{self.base}/e/c/"), TOKEN, f"/{len(self.constant_links) - 1}"]
            else:
                self.links.append(target)
                out.append(Ref("click", str(len(self.links) - 1), None, True))
            out.append(match.group(2))
            at = match.end()
        rest = _split(source[at:], True)
        if rest is None:
            return None
        out += rest
        joined: list[Piece] = []
        for piece in out:  # literals merged, so the preheader and pixel can be placed in them
            if isinstance(piece, str) and joined and isinstance(joined[-1], str):
                joined[-1] += piece
            else:
                joined.append(piece)
        if insert_preheader:
            pre = _split(preheader, True)
            if pre is None:
                return None
            joined = _insert(joined, body_start is not None, [_PREHEADER, *pre, "</div>"], at_start=True)
        pixel: list[Piece] = ['<img src="', Ref(None, "open_url", None, True), '" width="1" height="1" alt="" '
                 'style="display:none;border:0">']  # fmt: skip
        result = _insert(joined, True, pixel, at_start=False)
        if isinstance(result[-1], str) and result[-1].endswith("\n"):  # as Jinja drops it
            result[-1] = result[-1][:-1]
        return result

    def _tokens(self, pieces: list[Piece]) -> list[Piece]:
        """With a links base, the unsubscribe and open URLs become the base, the path and the message's token."""
        if not self.base:
            return pieces
        out: list[Piece] = []
        for piece in pieces:
            if isinstance(piece, Ref) and piece.scope is None and piece.name in ("unsubscribe_url", "open_url"):
                path = "/e/u/" if piece.name == "unsubscribe_url" else "/e/o/"
                base = html.escape(self.base + path) if piece.escape else self.base + path
                # unsubscribing has its own token: a link forwarded from the message must not unsubscribe anyone
                out += [base, TOKEN, ".gif"] if piece.name == "open_url" else [base, UNSUBSCRIBE_TOKEN]
            else:
                out.append(piece)
        return out

    def values(self, fields: Mapping[str, Mapping[str, Any]], links: Mapping[str, str],
               click: Callable[[str], str] | None) -> list[str]:  # fmt: skip
        """The recipient's value for each ref (``self.refs`` order). Raises TemplateProblem for an empty field
        under the ``error`` policy, naming it."""
        raw: dict[Ref, str] = {}
        out = []
        for ref in self.refs:
            value = self._raw(ref, fields, links, click, raw)
            out.append(html.escape(value, quote=True) if ref.escape else value)
        return out

    def subject_for(self, fields: Mapping[str, Mapping[str, Any]], links: Mapping[str, str]) -> str:
        text = "".join(p if isinstance(p, str) else self._raw(p, fields, links, None, {}) for p in self.subject)
        return " ".join(text.split())

    def _raw(self, ref: Ref, fields: Mapping[str, Mapping[str, Any]], links: Mapping[str, str],
             click: Callable[[str], str] | None, cache: dict[Ref, str]) -> str:  # fmt: skip
        if ref.scope == "click":
            pieces = self.links[int(ref.name)]
            target = "".join(p if isinstance(p, str) else self._raw(p, fields, links, None, cache) for p in pieces)
            return click(target) if click is not None else target
        if ref.scope is None:
            return str(links.get(ref.name, ""))
        value = fields.get(ref.scope, {}).get(ref.name)
        if value is None or value == "":
            if ref.default is not None:
                return ref.default
            if self.missing == "error":
                raise TemplateProblem("merge", None, f"the merge field {ref.scope}.{ref.name} is empty for this "
                                      "recipient", f"{ref.scope}.{ref.name}")  # fmt: skip
            return ""
        return str(value)

    def render(self, part: str, tag: Callable[[int], str]) -> str:
        """The part with each value's tag (a provider's substitution syntax) in its place."""
        index = {ref: n for n, ref in enumerate(self.refs)}
        return "".join(p if isinstance(p, str) else tag(index[p]) for p in self.parts[part])


#: The message's token (base64url: the same escaped or not), and its unsubscribe token.
TOKEN = Ref(None, "message_token")
UNSUBSCRIBE_TOKEN = Ref(None, "unsubscribe_token")


class NotMergeable(ValueError):
    """The variant needs the full renderer (template logic)."""


def _insert(pieces: list[Piece], found: bool, extra: list[Piece], *, at_start: bool) -> list[Piece]:
    """Put ``extra`` after <body ...> (at_start) or before </body>, inside the first literal holding the tag."""
    pattern = _BODY_START if at_start else _BODY_END
    if found:
        for n, piece in enumerate(pieces):
            if isinstance(piece, str):
                match = pattern.search(piece)
                if match:
                    cut = match.end() if at_start else match.start()
                    return [*pieces[:n], piece[:cut], *extra, piece[cut:], *pieces[n + 1 :]]
    return [*extra, *pieces] if at_start else [*pieces, *extra]
