"""The demo: synthetic Sentinel-2 products with the real SAFE shape (``products``) and the
README's first command (``quickstart``), which runs the whole graph on them.

Top layer beside ``cli``: it may import everything; only ``cli``, tests and benchmarks import it.
"""
