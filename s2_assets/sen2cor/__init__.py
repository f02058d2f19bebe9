"""sen2cor: TODO docstring."""
