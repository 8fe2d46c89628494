"""What every domain shares: the sync state database resource, its IO manager, and the sync asset decorator."""
