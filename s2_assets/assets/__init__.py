"""The Dagster face: asset definitions (catalogue, products, masks, indices, composites,
outputs, housekeeping) and their checks, each thin glue over the pure packages below.

May import anything in the package except ``definitions`` and ``cli``; nothing but
``definitions`` (and tests) imports it.
"""
