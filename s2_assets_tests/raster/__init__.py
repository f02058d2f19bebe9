"""Tests for raster math and I/O."""
