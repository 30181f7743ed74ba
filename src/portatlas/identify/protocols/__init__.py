"""Protocol modules, one per file; the list that is loaded is registry.PROTOCOL_MODULES."""
