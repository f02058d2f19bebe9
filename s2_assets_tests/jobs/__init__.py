"""Tests for job files and automation."""
