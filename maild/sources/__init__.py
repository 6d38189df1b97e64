"""Where messages come from; the only places that talk to mail servers or read mail files."""
