"""The clairvoyant oracle (pacing.md s4.7.3): the talk time a dialer could reach if it knew every lead's future.

It knows each lead's outcome and timings and each agent's wrap-ups (the same common random numbers as the
simulated shift), keeps the same line cap and list order, and abandons nobody. Walking the list in order, a
lead that a person will answer is dialled so that the answer lands when the next agent frees up (never before
a line is free, never before the lead ahead of it); the others take a line as early as possible, and their
answering machines are hung up at once (no agent time is spent on them). An upper bound on talk occupancy at
0% abandons for any dialer that cannot see the future; a real dialer's share of it is its regret.
"""

from __future__ import annotations

import heapq

from sim.callcentre import BUSY, FAIL, HUMAN, MACHINE, Lead, Result, Scenario, at, wrap_time


def oracle_shift(scenario: Scenario, seed: int, *, bridge_s: float = 0.3) -> Result:
    result = Result(scenario.name, "oracle", seed)
    end = scenario.shift_hours * 3600
    agents = [(0.0, j) for j in range(scenario.agents)]  # (free at, agent)
    lines = [0.0] * int(scenario.lines_per_agent * scenario.agents)  # free at
    heapq.heapify(lines)
    calls_done = [0] * scenario.agents
    last_dial, index = 0.0, 0
    while True:
        earliest = max(last_dial, lines[0])
        if earliest >= end:
            break
        lead = Lead(seed, index)
        index += 1
        outcome = lead.outcome(at(scenario.p_human, earliest / 3600), scenario.p_machine, scenario.ring_timeout_s)
        if outcome == HUMAN:
            age = lead.pdd + lead.ring_human
            free_at, agent = heapq.heappop(agents)
            dial = max(earliest, free_at - age - bridge_s)
            connect = dial + age + bridge_s
            talk = lead.talk * at(scenario.talk_factor, connect / 3600)
            calls_done[agent] += 1
            wrap = wrap_time(seed, agent, calls_done[agent], talk)
            heapq.heappush(agents, (connect + talk + wrap, agent))
            heapq.heapreplace(lines, connect + talk)
            if connect < end:
                result.people += 1
                result.connected += 1
                result.talk_s += min(connect + talk, end) - connect
                result.idle_waits.append(max(0.0, connect - free_at))
        else:
            dial = earliest
            duration = {FAIL: lead.pdd + 0.5, BUSY: lead.pdd + 4.0}.get(outcome, scenario.ring_timeout_s)
            if outcome == MACHINE:
                duration = lead.pdd + lead.ring_machine
            heapq.heapreplace(lines, dial + duration)
        result.dials += 1
        last_dial = dial
    result.login_s = scenario.agents * end  # the oracle is for scenarios without breaks
    return result
