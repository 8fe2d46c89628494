"""The project's own Python files parsed, for the tests that read its structure (imports, strings).

CPython 3.11 counts the depth of an AST's conversion in one counter per interpreter. A garbage collection during
``ast.parse`` can run a finalizer (a database connection an earlier test dropped, logging its reset) whose
traceback formatting parses a line of source again, and the outer parse then fails with "AST constructor
recursion depth mismatch". The collector is paused while a file is parsed, so such finalizers run after it.
"""

from __future__ import annotations

import ast
import gc
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    """``path``'s syntax tree."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return ast.parse(path.read_text(), filename=str(path))
    finally:
        if was_enabled:
            gc.enable()
