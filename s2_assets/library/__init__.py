"""library: TODO docstring."""
