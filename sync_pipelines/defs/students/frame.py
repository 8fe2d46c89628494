"""The students snapshot's type, named without importing pandas when the code location loads.

Importing pandas costs about 0.6 s of CPU, and every process that loads the code location pays it (the code
server, each run worker, each ``dagster job execute``, the daemon's), though only the RT sync's steps hold a
DataFrame. Dagster reads the annotations of an asset's or a check's function when the code location loads, so
those name ``StudentsFrame``: pandas' DataFrame for the type checker, any value for Dagster (the state table IO
manager is what makes the DataFrame). The modules that work on a frame import pandas in the function that does.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pandas import DataFrame as StudentsFrame
else:
    StudentsFrame = Any

__all__ = ["StudentsFrame"]
