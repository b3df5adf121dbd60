"""Telephony engine: campaign runners, hopper, agents, calls, lead caps, the Telnyx adapter, webhooks.

Empty until the telephony-edge and dialer issues (#5, #6) land."""
