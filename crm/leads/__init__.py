"""Leads: what conversations produce, their QA workflow and the queue analysts work from."""
