"""Django settings, URLs and views used only by the benchmarks (never by tests)."""
