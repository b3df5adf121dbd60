"""What happens when the simulated carrier dials a number: a seeded, per-destination script. Pure.

The same seed and number always give the same script (tests and benchmarks replay exactly); a script can also
be set explicitly for a number. Times are in carrier milliseconds before the speed multiplier.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_MS = 4 * 3600 * 1000  # Telnyx ends every call by 4 h
AMD_RESULTS = frozenset({"human", "human_residence", "human_business", "machine", "not_sure", "silence",
                         "fax_detected"})  # fmt: skip
OUTCOMES = ("human", "machine", "no_answer", "busy", "rejected", "invalid", "unavailable")
#: Share of each outcome for numbers without an explicit script (roughly a B2B cold list).
WEIGHTS = {"human": 0.35, "machine": 0.2, "no_answer": 0.25, "busy": 0.1, "rejected": 0.04, "invalid": 0.03,
           "unavailable": 0.03}  # fmt: skip

#: (hangup_cause, sip code) for outcomes that end before an answer.
FAILURES = {
    "busy": ("user_busy", "486"),
    "rejected": ("call_rejected", "603"),
    "invalid": ("not_found", "404"),
    "unavailable": ("no_answer", "480"),
}


@dataclass(frozen=True)
class Script:
    outcome: str
    ring_ms: int = 4000  # until the answer (or the failure)
    greeting_ms: int = 1500  # human "hello ..." or the machine's message
    amd_delay_ms: int = 800  # after the greeting (human) or into the message (machine) until the verdict
    talk_ms: int = 60_000  # callee hangs up this long after the answer, unless we hang up first
    amd_result: str | None = None  # override: human_residence, human_business, not_sure, silence, fax_detected

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        for name in ("ring_ms", "greeting_ms", "amd_delay_ms", "talk_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MS:
                raise ValueError(f"{name} must be a whole number of milliseconds, 0 to {MAX_MS}")
        if self.amd_result is not None and self.amd_result not in AMD_RESULTS:
            raise ValueError(f"amd_result must be one of {', '.join(sorted(AMD_RESULTS))}")


def script_for(number: str, seed: int) -> Script:
    """The script of a number without an explicit one: seeded by (seed, number), so it never changes."""
    rng = random.Random(f"{seed}:{number}")  # noqa: S311 - simulation, not security
    outcome = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    return Script(
        outcome,
        ring_ms=rng.randint(2000, 9000) if outcome not in FAILURES else rng.randint(500, 3000),
        greeting_ms=rng.randint(800, 2500) if outcome == "human" else rng.randint(4000, 12000),
        amd_delay_ms=rng.randint(500, 1200),
        talk_ms=rng.randint(20_000, 240_000),
    )
