"""outputs: TODO docstring."""
