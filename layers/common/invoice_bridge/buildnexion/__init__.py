"""BuildNexion, the source side: webhook signatures, event envelopes and objects."""
