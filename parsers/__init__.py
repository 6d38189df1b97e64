"""Pure parsing: raw bytes in, a frozen ParsedMessage out (no database, no network)."""
