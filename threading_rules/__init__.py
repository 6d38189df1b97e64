"""Which ticket a message belongs to: an ordered list of small pure rules, each with a reason."""
