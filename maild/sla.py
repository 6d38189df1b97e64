"""SLA due times: pure arithmetic over the ticket's clock and the configured targets.

The clock runs 24x7 (the public offer's mode). Contracts with business hours by the
official production calendar, and the pause while a ticket waits for the client, are
not modelled yet: `due_times` is the one place that will learn them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.config import SlaConfig


@dataclass(frozen=True, slots=True)
class DueTimes:
    first_response: datetime | None
    """When the first engineer answer is due; None once it was given."""
    resolution: datetime | None
    """When the ticket should be resolved; None once it is resolved or closed."""
    first_response_overdue: bool
    resolution_overdue: bool


def due_times(
    targets: SlaConfig,
    *,
    criticality: str,
    created_at: datetime,
    first_response_at: datetime | None,
    status: str,
    now: datetime,
) -> DueTimes:
    first = None
    if first_response_at is None:
        first = created_at + timedelta(hours=targets.first_response_hours[criticality])
    resolution = None
    if status not in ("resolved", "closed"):
        resolution = created_at + timedelta(hours=targets.resolution_hours[criticality])
    return DueTimes(
        first_response=first,
        resolution=resolution,
        first_response_overdue=first is not None and now > first,
        resolution_overdue=resolution is not None and now > resolution,
    )
