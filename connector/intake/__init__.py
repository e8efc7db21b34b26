"""Intake: DooPage's webhooks received, checked and handed to the store (routes, access rules)."""
