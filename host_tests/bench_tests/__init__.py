"""Tests of the benchmarks (tools/bench/)."""
