"""Websocket protocol and handlers for agents and supervisors, and the static pages. Empty until #6 and #7."""
