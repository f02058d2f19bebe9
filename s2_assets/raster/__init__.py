"""Pure raster code: band math, masks, indices, block-wise I/O. Never imports Dagster."""
