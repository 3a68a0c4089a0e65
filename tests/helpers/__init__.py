"""Importable helpers for the tests (user-model modules referenced as "tests.helpers.<module>:<factory>")."""
