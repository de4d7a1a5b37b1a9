"""Environments of the four suites and the padded wrapper that gives them one interface."""
