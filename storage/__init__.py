"""Everything that touches disk or the database: spool, models, repositories, artifacts, outbox."""
