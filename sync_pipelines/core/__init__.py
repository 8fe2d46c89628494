"""Machinery shared by every pipeline: errors, database URLs, the HTTP layer, secret redaction."""
