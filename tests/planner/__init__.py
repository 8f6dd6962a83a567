"""Planner tests (a package so that test module names do not clash with other folders)."""
