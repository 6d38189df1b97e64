"""Managers' reports: figures from the database, rendered as text, HTML, CSV and charts."""
