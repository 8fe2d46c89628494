"""An asset that syncs read, declared once with everything it needs: the students table is one.

A sync names its upstream assets (``SyncSpec.upstream``); the code location defines each of them once, with its
own checks and resources, whichever syncs read it, and a sync job materializes it first. Its variables are
those of every sync that reads it (``SyncSpec.required_variables``), and nothing of a sync that reads it (RT's
custom-field checks, say) is attached to it, so a second sync reading it needs only its own variables and the
upstream's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class Upstream:
    """One upstream asset: the asset, its checks (run with it, and by ``sync_checks`` for every system reading
    it), the resources it reads (key -> resource) and the variables without which it cannot be read."""

    asset: dg.AssetsDefinition
    checks: Sequence[dg.AssetChecksDefinition]
    resources: Mapping[str, object]
    required_variables: tuple[str, ...]

    @property
    def name(self) -> str:
        """The asset's key, as a sync's source finds its value (``SourceInputs.upstream[name]``)."""
        return self.asset.key.to_user_string()

    def definitions(self) -> dg.Definitions:
        return dg.Definitions(
            assets=[self.asset], asset_checks=list(self.checks), resources=dict(self.resources)
        )
