"""Preuve."""
