"""Operator commands: see, replay and repair the sync of a deployed stack or of the local stack."""
