"""The simulated world: Telnyx-compatible carrier, agent bots, call-centre simulator. Empty until #5."""
