"""Backward-compatible name: users' models (`package.module:factory` references and the `genbench.models`
entry points) moved to `genbench.models` (adapters in genbench/models/external.py, registration in
genbench/models/registry.py); `genbench.external.register_external` keeps working."""

from genbench.models.external import *  # noqa: F401,F403
from genbench.models.external import (ENTRY_POINT_GROUP, ExternalModelError, ModelOutputError,  # noqa: F401
                                      make_model_class, parse_reference, resolve, validate_samples)
from genbench.models.registry import (ENTRY_POINT_ERRORS, is_external, load_entry_points,  # noqa: F401
                                      register_external, unregister_external)
