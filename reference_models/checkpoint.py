"""Backward-compatible name: checkpoint files (sha256 manifest, plain-data weights) moved to
`genbench.models.checkpoint`, part of the model protocol."""

from genbench.models.checkpoint import *  # noqa: F401,F403
from genbench.models.checkpoint import (MANIFEST, CheckpointError, UnsafeStateError, decode_state,  # noqa: F401
                                        encode_state, load_weights, read_verified, write_manifest)
