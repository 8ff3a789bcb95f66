"""Tests of the board tools (tools/bringup/)."""
