"""demo: TODO docstring."""
