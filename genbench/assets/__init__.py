"""Data and weight assets: `fetch(name) -> Path` (verified, fetched into the cache if needed), the `ASSETS`
registry, `status`/`cache_dir` helpers. See genbench/assets/hashing.py (how a file is pinned), sources.py (what an asset is, where files come from), core.py (fetching, caching) and catalog.py for
the pinned hashes and sources of each asset."""

from genbench.assets.catalog import ASSETS
from genbench.assets.core import AssetStatus, asset_dir, fetch, probe, status
from genbench.assets.hashing import Member, check_file, hash_content
from genbench.assets.sources import Asset, SourceUnavailable, cache_dir, env_var, offline

__all__ = ["ASSETS", "Asset", "AssetStatus", "Member", "SourceUnavailable", "asset_dir", "cache_dir",
           "check_file", "env_var", "fetch", "hash_content", "offline", "probe", "status"]
