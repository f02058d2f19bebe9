"""Assets: one module per product level; thin glue over pure code."""
