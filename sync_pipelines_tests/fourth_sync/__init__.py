"""A fourth sync added from the public extension points only (``library/``: students -> library_patrons)."""
