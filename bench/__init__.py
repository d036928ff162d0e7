"""Reproducible benchmarks: `python -m bench` runs them all (engine, service, api, throughput),
`python -m bench engine` one of them; docs/benchmarks.md says what each measures."""
