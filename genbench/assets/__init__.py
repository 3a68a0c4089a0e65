"""Data and weight assets: `fetch(name) -> Path` (verified, fetched into the cache if needed), the `ASSETS`
registry, `status`/`cache_dir` helpers. See genbench/assets/sources.py (what an asset is), core.py (fetching, caching) and catalog.py for
the pinned hashes and sources of each asset."""

from genbench.assets.catalog import ASSETS
from genbench.assets.core import (
    Asset,
    AssetStatus,
    Member,
    SourceUnavailable,
    asset_dir,
    cache_dir,
    check_file,
    env_var,
    fetch,
    hash_content,
    offline,
    probe,
    status,
)

__all__ = ["ASSETS", "Asset", "AssetStatus", "Member", "SourceUnavailable", "asset_dir", "cache_dir",
           "check_file", "env_var", "fetch", "hash_content", "offline", "probe", "status"]
