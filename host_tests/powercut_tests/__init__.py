"""Tests of the power-losing flash (tools/powercut/) and the store under it."""
