"""Email engine: rendering, guards, providers, send pipeline, tracking, bounces. Empty until issue #8."""
