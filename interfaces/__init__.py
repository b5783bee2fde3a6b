"""Thin front ends: the REST API and the command line."""
