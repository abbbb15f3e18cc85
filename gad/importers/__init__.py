"""Importers of data from the systems GAD replaces."""
