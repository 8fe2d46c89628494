"""One folder per system (resource, assets, checks, schedules), merged into one ``Definitions``."""
