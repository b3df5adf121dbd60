"""Message templates: subject, preheader, HTML and text parts with merge fields, in Jinja2's sandbox.

Content creators are not trusted with the process: the sandboxed environment refuses attribute access to
anything but plain data (no ``__class__`` walks, no method calls on internals). Templates are compiled once per
variant and rendered per recipient.

Merge fields are ``{{ contact.first_name }}``, ``{{ account.name }}``, ``{{ campaign.name }}``, the link
``{{ unsubscribe_url }}`` and the sender's ``{{ postal_address }}``; a fallback is Jinja's
``{{ contact.first_name | default("there") }}``. A field that does not exist is an error when the template is
compiled, with its line. A field that exists but is empty for a recipient follows the variant's policy: ``error``
(the recipient is skipped with the field and line named; the default, since "Hi ," is worse than no mail) or
``blank``.

Links in the HTML part to http(s) URLs are rewritten at compile time into click-tracking links (the URL, merge
fields and all, is signed into the token at render time); the open pixel goes before ``</body>``. A text part
left empty is derived from the HTML at compile time.
"""

from __future__ import annotations

import html
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from jinja2 import DictLoader, StrictUndefined, TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.runtime import ChainableUndefined, Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from dispatch.text_part import html_to_text

MissingPolicy = Literal["error", "blank"]
PARTS = ("subject", "preheader", "html", "text")
FIELDS: dict[str, frozenset[str]] = {
    "contact": frozenset({"first_name", "last_name", "full_name", "title", "email", "phone", "country"}),
    "account": frozenset({"name", "domain", "industry", "employees", "country"}),
    "campaign": frozenset({"name"}),
}  # fmt: skip
#: What the sender provides besides the merge fields: the message's links and the sender's postal address.
LINKS = frozenset({"unsubscribe_url", "open_url", "postal_address"})
MAX_HTML_BYTES = 100 * 1024
_HREF = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>]*)\2""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
PIXEL = '<img src="{{ open_url }}" width="1" height="1" alt="" style="display:none;border:0">'
PREHEADER = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{{ preheader }}</div>'


class TemplateProblem(ValueError):
    """A template that does not compile, or does not render for one recipient: the part, line and field named."""

    def __init__(self, part: str, line: int | None, message: str, field: str | None = None) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {message}")
        self.part, self.line, self.field, self.reason = part, line, field, message


class Record(dict[str, Any]):
    """One scope of merge fields (``contact``...): a dict that knows its name for error messages."""

    __slots__ = ("scope",)

    def __init__(self, scope: str, values: Mapping[str, Any]) -> None:
        super().__init__((k, v) for k, v in values.items() if v is not None and v != "")
        self.scope = scope


class _Missing(StrictUndefined):
    """Strict: using an empty field raises, naming it (``contact.first_name``, not "dict object")."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        owner = self._undefined_obj
        name = f"{owner.scope}.{self._undefined_name}" if isinstance(owner, Record) else self._undefined_name
        raise UndefinedError(f"the merge field {name} is empty for this recipient")

    __str__ = __iter__ = __len__ = __eq__ = __ne__ = __bool__ = __hash__ = __contains__ = _fail_with_undefined_error


class _Blank(ChainableUndefined):
    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    html: str
    text: str


#: The links of one message: the click-tracking URL for a target URL.
ClickLink = Callable[[str], str]


@pass_context
def _track(context: Context, value: str) -> Markup:
    click: ClickLink | None = context.get("_click")
    url = html.unescape(str(value))
    return Markup(html.escape(click(url) if click is not None else url, quote=True))  # noqa: S704 - escaped here


class CompiledVariant:
    """One variant's four parts, compiled. ``render`` is what runs per recipient."""

    def __init__(
        self, subject: str, preheader: str, html_body: str, text_body: str, *, missing: MissingPolicy = "error",
        track_clicks: bool = True, track_opens: bool = True,
    ) -> None:  # fmt: skip
        if len(html_body.encode("utf-8")) > MAX_HTML_BYTES:
            raise TemplateProblem("html", None, f"the HTML part is over {MAX_HTML_BYTES // 1024} KB")
        self.links = len(_HREF.findall(html_body))
        source = (
            _HREF.sub(r"\1\2{% filter pivotal_track %}\3{% endfilter %}\2", html_body) if track_clicks else html_body
        )
        if preheader.strip():
            start = _BODY_START.search(source)
            at = start.end() if start else 0
            source = source[:at] + PREHEADER + source[at:]
        if track_opens:
            end = _BODY_END.search(source)
            source = source[: end.start()] + PIXEL + source[end.start() :] if end else source + PIXEL
        text = text_body if text_body.strip() else html_to_text(html_body)
        undefined = _Missing if missing == "error" else _Blank
        sources = {"subject": subject, "preheader": preheader, "html": source, "text": text}
        self._html_env = _environment(sources, undefined, autoescape=True)
        self._plain_env = _environment(sources, undefined, autoescape=False)
        self._templates = {}
        for part in PARTS:
            env = self._html_env if part in ("html", "preheader") else self._plain_env
            try:
                _check_fields(part, env.parse(sources[part]), frozenset(env.globals))
                self._templates[part] = env.get_template(part)
            except TemplateSyntaxError as exc:
                raise TemplateProblem(part, exc.lineno, exc.message or "syntax error") from None

    def render(self, fields: Mapping[str, Mapping[str, Any]], links: Mapping[str, str],
               click: ClickLink | None) -> Rendered:  # fmt: skip
        """``fields``: {"contact": {...}, "account": {...}, "campaign": {...}}; ``links``: unsubscribe_url,
        open_url. Raises TemplateProblem naming the part, line and field."""
        context: dict[str, Any] = {scope: Record(scope, fields.get(scope, {})) for scope in FIELDS}
        context.update(links)
        context["_click"] = click
        out: dict[str, str] = {}
        for part in PARTS:
            if part == "html":
                context["preheader"] = Markup(out["preheader"])  # noqa: S704 - rendered with autoescape
            try:
                out[part] = self._templates[part].render(context)
            except (UndefinedError, SecurityError, TemplateError, ArithmeticError, TypeError, ValueError) as exc:
                line = _template_line(exc, part)
                field = re.search(r"merge field (\S+)", str(exc))
                raise TemplateProblem(part, line, str(exc), field.group(1) if field else None) from None
        subject = " ".join(out["subject"].split())  # a header: no line breaks a merge field could smuggle in
        return Rendered(subject, out["html"], out["text"])


def _environment(sources: dict[str, str], undefined: type, *, autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(loader=DictLoader(sources), undefined=undefined, autoescape=autoescape,
                                        auto_reload=False, cache_size=-1)  # fmt: skip
    env.filters["pivotal_track"] = _track
    return env


def _check_fields(part: str, tree: nodes.Template, builtins: frozenset[str]) -> None:
    """Every ``scope.field`` names a known field; every bare name is a scope or a link."""
    for node in tree.find_all(nodes.Getattr):
        scope = node.node.name if isinstance(node.node, nodes.Name) else None
        if scope in FIELDS and node.attr not in FIELDS[scope]:
            names = ", ".join(sorted(FIELDS[scope]))
            raise TemplateProblem(part, node.lineno, f"{scope}.{node.attr} is not a merge field (there are: {names})",
                                  f"{scope}.{node.attr}")  # fmt: skip
    known = LINKS | builtins | {"preheader", "loop"} | {n.name for n in tree.find_all(nodes.Name) if n.ctx != "load"}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in FIELDS and name.name not in known:
            raise TemplateProblem(part, name.lineno, f"{name.name} is not a merge field (use contact.*, account.*, "
                                  "campaign.name, unsubscribe_url or postal_address)", name.name)  # fmt: skip


def _template_line(exc: BaseException, part: str) -> int | None:
    """Jinja rewrites a render error's traceback into template frames: the innermost one of ``part``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in (part, "<template>"):
            line = frame.lineno
    return line
