"""The sync engine every destination shares: the lookup rule after an unknown outcome, the registry."""
