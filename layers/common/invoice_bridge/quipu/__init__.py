"""Quipu: supplier invoices from BuildNexion become Quipu expense invoices, exactly once, at Quipu's rate."""
