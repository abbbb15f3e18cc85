"""One blueprint per domain: parse with a schema, call one service, serialise."""
