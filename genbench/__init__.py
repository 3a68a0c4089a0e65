"""genbench: train, sample and score every family of generative model under one named protocol."""

__version__ = "0.1.0"
