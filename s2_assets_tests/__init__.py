"""Tests for s2_assets; the tree mirrors the package."""
