"""invoice-bridge: BuildNexion documents into Quipu, tuimprenta.digital and FacturaDirecta, exactly once."""
