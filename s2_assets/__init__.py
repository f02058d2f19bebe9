"""s2_assets: sen2chain's Sentinel-2 processing as a Dagster code location."""

__version__ = "0.1.0"
