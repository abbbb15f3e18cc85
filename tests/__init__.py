"""GAD test suite."""
