"""Pure rate math with no I/O: predictive pacer, abandon ledger, token buckets, warmup, frequency caps.

Imports nothing but the standard library. Empty until the dialer and email issues (#6, #8) land."""
