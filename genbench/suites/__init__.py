"""Built-in benchmark suites (TOML files read by genbench.suite)."""
