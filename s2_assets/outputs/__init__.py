"""What users read after the products: the STAC catalogue, time series (zonal statistics,
their files and smoothing) and the cube over a tile's indices or composites.

Pure: no Dagster. May import the vocabulary and the pure domains (``library``, ``raster``);
the faces (``assets``, ``jobs``) import it.
"""
