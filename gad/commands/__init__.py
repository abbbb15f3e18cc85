"""GAD's CLI (`flask gad`, in gad.commands.cli); this package imports nothing, so `python -m gad.commands.X` runs cleanly."""
