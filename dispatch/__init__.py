"""E-mail engine: templates, guards, throttling, providers, the send ledger, tracking and unsubscribes."""
