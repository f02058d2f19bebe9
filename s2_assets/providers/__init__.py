"""Where products come from: a local or EODC archive of zips, and CDSE. Plain Python, no Dagster."""
