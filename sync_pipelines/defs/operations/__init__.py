"""Cross-domain operations: the checks-only job, failure alerts, run history upkeep."""
