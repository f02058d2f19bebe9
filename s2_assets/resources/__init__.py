"""Dagster resources: thin ConfigurableResources around providers, Chiller, Sen2Cor, library."""
