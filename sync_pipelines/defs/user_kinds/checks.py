"""Checks on ZLV's ``users.kind``: only the four kinds (or NULL), and few active users left without one."""

import dagster as dg
from pydantic import Field

from sync_pipelines.defs.shared.failures import reported_as_failures
from sync_pipelines.defs.user_kinds.mapping import KINDS
from sync_pipelines.defs.user_kinds.resources import ZlvDatabase
from sync_pipelines.defs.user_kinds.source import TARGET


@dg.asset_check(
    asset=TARGET,
    blocking=True,
    description="Every users.kind is NULL or one of: " + ", ".join(repr(kind) for kind in KINDS) + ".",
)
@reported_as_failures
def user_kinds_valid_values(zlv_database: ZlvDatabase) -> dg.AssetCheckResult:
    invalid = zlv_database.users().invalid_kinds()
    return dg.AssetCheckResult(
        passed=not invalid,
        metadata={
            "users_with_invalid_kind": dg.MetadataValue.int(sum(invalid.values())),
            "invalid_values": dg.MetadataValue.json(dict(sorted(invalid.items())[:20])),
        },
    )


class CoverageCheckConfig(dg.Config):
    max_share_without_kind: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="warn when more than this share of users with an email (and not deleted) has no kind",
    )


@dg.asset_check(
    asset=TARGET,
    description="Share of users with an email, not deleted, whose kind is NULL (not in Portail DF, records that "
    "disagree, or never synced); a warning above the threshold (run config max_share_without_kind, default 20%).",
)
@reported_as_failures
def user_kinds_coverage(config: CoverageCheckConfig, zlv_database: ZlvDatabase) -> dg.AssetCheckResult:
    total, without = zlv_database.users().coverage()
    share = without / total if total else 0.0
    return dg.AssetCheckResult(
        passed=share <= config.max_share_without_kind,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "users_with_email": dg.MetadataValue.int(total),
            "users_without_kind": dg.MetadataValue.int(without),
            "share_without_kind": dg.MetadataValue.float(round(share, 4)),
            "threshold": dg.MetadataValue.float(config.max_share_without_kind),
        },
    )
