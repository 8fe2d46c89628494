"""A sync's resources as one typed object: a frozen dataclass with one field per resource key.

Dagster hands a run its resources by key (``context.resources.request_tracker``), typed ``Any``: a misspelt key is
found only when a run reaches it. A sync declares its resources as a ``ResourceBundle`` subclass instead
(``RtResources(request_tracker=RequestTrackerResource(...))``), so mypy checks both the declaration and every use
(``inputs.resources.request_tracker``): the field names are the resource keys, the declared object's values are
the resource definitions the code location registers, and ``of_run`` gives a run the same type holding the
initialized resources.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

BundleT = TypeVar("BundleT", bound="ResourceBundle")


@dataclass(frozen=True)
class ResourceBundle:
    """Base of every sync's resource bundle (a frozen dataclass; its fields are the resource keys)."""

    @classmethod
    def resource_keys(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    def by_key(self) -> dict[str, object]:
        """The resource definitions, by key, as ``dg.Definitions(resources=...)`` takes them."""
        return {key: getattr(self, key) for key in self.resource_keys()}

    @classmethod
    def of_run(cls: type[BundleT], resources: object) -> BundleT:
        """The bundle of a run's initialized resources (``context.resources``, or ``dg.build_resources``'s)."""
        return cls(**{key: getattr(resources, key) for key in cls.resource_keys()})
