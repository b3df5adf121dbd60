"""A job title's function and seniority, for order filters: contacts carry a free-text title, orders ask for
functions ("it", "marketing") and seniorities ("vp", "director").

Words of the title are matched against keyword tables, most specific first; a title that says nothing known
has neither (and then matches no order that filters on it).
"""

from __future__ import annotations

import re
from functools import lru_cache

SENIORITIES = ("c_level", "vp", "director", "manager", "senior", "entry")
FUNCTIONS = ("executive", "it", "engineering", "security", "marketing", "sales", "finance", "hr", "operations",
             "legal", "product", "customer_success", "procurement")  # fmt: skip

# phrases before words: "vice president" before "president", "head of" before anything
_SENIORITY_PHRASES = (
    ("vice president", "vp"), ("head of", "director"), ("managing director", "c_level"),
    ("general manager", "director"), ("team lead", "manager"),
)  # fmt: skip
_SENIORITY_WORDS = {
    "chief": "c_level", "ceo": "c_level", "cto": "c_level", "cfo": "c_level", "cio": "c_level", "cmo": "c_level",
    "coo": "c_level", "ciso": "c_level", "cro": "c_level", "cpo": "c_level", "chro": "c_level",
    "president": "c_level", "founder": "c_level", "cofounder": "c_level",
    "vp": "vp", "svp": "vp", "evp": "vp", "avp": "vp",
    "director": "director", "head": "director",
    "manager": "manager", "lead": "manager", "supervisor": "manager",
    "senior": "senior", "sr": "senior", "principal": "senior", "staff": "senior",
    "junior": "entry", "jr": "entry", "associate": "entry", "assistant": "entry", "intern": "entry",
    "coordinator": "entry", "analyst": "entry", "specialist": "entry", "representative": "entry",
}  # fmt: skip
_FUNCTION_PHRASES = (
    ("information technology", "it"), ("human resources", "hr"), ("business development", "sales"),
    ("account executive", "sales"), ("supply chain", "operations"), ("demand generation", "marketing"),
    ("customer success", "customer_success"), ("information security", "security"),
    ("chief executive", "executive"), ("managing director", "executive"), ("general manager", "executive"),
)  # fmt: skip
_FUNCTION_WORDS = {
    "ceo": "executive", "founder": "executive", "cofounder": "executive", "president": "executive",
    "owner": "executive",
    "it": "it", "cio": "it", "infrastructure": "it", "systems": "it", "network": "it", "helpdesk": "it",
    "cto": "engineering", "engineering": "engineering", "engineer": "engineering", "developer": "engineering",
    "software": "engineering", "devops": "engineering", "architect": "engineering",
    "ciso": "security", "security": "security", "cybersecurity": "security",
    "cmo": "marketing", "marketing": "marketing", "brand": "marketing", "growth": "marketing",
    "content": "marketing", "communications": "marketing",
    "cro": "sales", "sales": "sales", "revenue": "sales", "bdr": "sales", "sdr": "sales",
    "cfo": "finance", "finance": "finance", "financial": "finance", "accounting": "finance",
    "controller": "finance", "treasurer": "finance",
    "chro": "hr", "hr": "hr", "people": "hr", "talent": "hr", "recruiting": "hr", "recruiter": "hr",
    "coo": "operations", "operations": "operations", "logistics": "operations",
    "legal": "legal", "counsel": "legal", "compliance": "legal", "attorney": "legal",
    "cpo": "product", "product": "product",
    "procurement": "procurement", "purchasing": "procurement", "buyer": "procurement",
}  # fmt: skip
_WORD = re.compile(r"[a-z]+")
#: "owner" and "partner" name the firm's owners only so: "Product Owner", "HR Business Partner" do not
_OWNERS = re.compile(
    r"^(owner|partner)$|\b(co ?owner|managing partner|general partner|equity partner|founding partner"
    r"|senior partner|owner (and|&)? ?founder|founder (and|&)? ?owner)\b"
)
#: "Assistant to the CEO" is an assistant: what follows "to" describes whom they serve
_SERVES = re.compile(r"\s(to|for)\s.*$")


@lru_cache(maxsize=65_536)
def classify(title: str) -> tuple[str | None, str | None]:
    """(function, seniority) of a job title; None for what it does not say."""
    text = " ".join(_WORD.findall(title.lower().replace("co-founder", "cofounder")))
    text = _SERVES.sub("", text)
    words = text.split()
    seniority = next((level for phrase, level in _SENIORITY_PHRASES if phrase in text), None)
    if seniority is None:
        levels = [_SENIORITY_WORDS[w] for w in words if w in _SENIORITY_WORDS]
        if _OWNERS.search(text):
            levels.append("c_level")
        seniority = min(levels, key=SENIORITIES.index) if levels else None
    function = next((kind for phrase, kind in _FUNCTION_PHRASES if phrase in text), None)
    if function is None:  # a named function beats "executive" ("Vice President, Sales", "Founder, Marketing")
        found = [_FUNCTION_WORDS[w] for w in words if w in _FUNCTION_WORDS]
        function = next((kind for kind in found if kind != "executive"), found[0] if found else None)
    if seniority is None and words:
        seniority = "entry" if function is not None else None
    return function, seniority
