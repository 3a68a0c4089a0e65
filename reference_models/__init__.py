"""Reference implementations of every generative family, one module each, on the model protocol of
`genbench.models` (which registers them by name; this package depends on it, never the reverse).

Add a model: write `reference_models/<family>.py` with a `genbench.models.GenerativeModel` subclass decorated by
`@genbench.models.register_model`, and add the module to `genbench.models.BUILTIN_FAMILIES`
(docs/extending.md walks through it).

`from reference_models import create_model, load_model, list_models` keeps working (the README's examples use
it): these names are re-exported from `genbench.models`.
"""

from __future__ import annotations

from genbench.models import (MODELS, GenerativeModel, ModelConfig, create_model, get_model_class, list_models,
                             load_model, register_model)

__all__ = ["GenerativeModel", "ModelConfig", "MODELS", "register_model", "create_model", "load_model", "list_models",
           "get_model_class"]
