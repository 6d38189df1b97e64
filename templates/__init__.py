"""Jinja2 templates of every message maild sends: `<name>.<lang>.txt.j2` (and `.html.j2`)."""
