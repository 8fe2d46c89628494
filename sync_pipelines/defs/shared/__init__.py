"""What every domain shares: the sync state database resource, its IO manager, the sync asset decorator, and the
``SyncSpec`` every sync is declared as, with the builder that makes its asset, jobs and schedule."""
