"""The model protocol and registry: every generative model genbench runs, built-in or the user's, is a
`GenerativeModel` (genbench/models/base.py) registered here by name.

- built-in families live in the `reference_models` package (one module each, listed in `BUILTIN_FAMILIES`,
  imported by name on first use: that package depends on this one, never the reverse);
- users' models: `model = "package.module:factory"` in a suite, or the `genbench.models` entry-point group of
  an installed package (genbench/models/external.py).
"""

from __future__ import annotations

from genbench.models.base import GenerativeModel, ModelConfig
from genbench.models.registry import (BUILTIN_FAMILIES, ENTRY_POINT_ERRORS, MODELS, create_model,
                                      external_model_class, get_model_class, install_external, is_external,
                                      list_models, load_entry_points, load_model, register_external, register_model,
                                      unregister_external)

__all__ = ["GenerativeModel", "ModelConfig", "MODELS", "BUILTIN_FAMILIES", "register_model", "create_model",
           "load_model", "list_models", "get_model_class", "register_external", "unregister_external",
           "external_model_class", "install_external",
           "is_external", "load_entry_points", "ENTRY_POINT_ERRORS"]
