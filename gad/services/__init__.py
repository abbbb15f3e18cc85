"""Business rules as plain functions: they take the acting usuario and ids, flush, and never commit."""
