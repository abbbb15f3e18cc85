"""Pydantic v2 schemas for every request, response and websocket message (In / Patch / Out shapes)."""
