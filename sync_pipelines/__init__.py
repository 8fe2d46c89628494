"""Dagster code location that keeps a school's and an agency's systems in step with each other.

Secrets given as files (``RT_TOKEN_FILE``, ``ZLV_DATABASE_URL_FILE``, ...: ``sync_pipelines.core.secret_files``)
are read into the environment here, before anything reads a setting: the code server, its run workers, the
configuration check and the stop wrapper all import this package first.
"""

import sys

from sync_pipelines.core.secret_files import load_secret_files

for _problem in load_secret_files():
    print(f"sync_pipelines: {_problem}", file=sys.stderr)
