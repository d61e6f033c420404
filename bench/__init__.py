"""Benchmarks of the bundle's hot paths, run by `make bench` (`python -m bench`); figures only, no pass or fail."""
