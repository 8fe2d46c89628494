"""Resources and helpers every domain uses: the sync state database and the sync asset runner."""
