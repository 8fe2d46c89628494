"""Dagster code location that keeps a school's and an agency's systems in step with each other."""
