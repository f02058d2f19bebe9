"""Tests for the product providers."""
