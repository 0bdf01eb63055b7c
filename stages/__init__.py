"""DVC stage scripts: one module per stage, each readable top to bottom (``python -m stages.<name>``)."""
