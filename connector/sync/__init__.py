"""Sync: from stored events to rows (state folding, the column mapping, routing, the worker, replay and
backfill)."""
