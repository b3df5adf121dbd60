"""Compliance: suppressions, consent, calling windows, attempt rules, frequency caps; one decision per channel."""
