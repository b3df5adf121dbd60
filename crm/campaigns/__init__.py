"""Telemarketing campaigns: their lifecycle and pre-start checklist, qualification forms, and call scripts."""
