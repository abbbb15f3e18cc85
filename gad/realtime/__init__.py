"""Real time: the event log publisher (and, later, the per-process listener and websocket hub)."""
