"""FacturaDirecta: BuildNexion purchase orders become FacturaDirecta purchase orders (XML API)."""
