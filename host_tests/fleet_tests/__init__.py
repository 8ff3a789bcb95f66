"""Tests of the fleet simulator (tools/fleet/)."""
