"""Assignment on arrival: a new ticket gets an engineer on duty, so an escalation has a person
to reach. `[assignment] mode`: none, round_robin (in turn) or least_loaded (fewest open
tickets); among the contract's engineers when it names them, else all. Outside working time
by the calendar nobody is on duty and the ticket waits for #take (the team is notified as
for any unassigned ticket). Engineers' #take and #assign always override it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.config import Config, ContractConfig
from maild.sla import calendar_for
from storage import repositories as repo
from storage.models import Engineer, SchedulerState, Ticket

ROUND_ROBIN_STATE = "assignment.round_robin.last"


def choose_engineer(
    mode: str, candidates: Sequence[str], loads: Mapping[str, int], last: str | None
) -> str | None:
    """Pure: the next engineer in turn, or the least loaded (ties in config order)."""
    if not candidates or mode == "none":
        return None
    if mode == "round_robin":
        if last in candidates:
            return candidates[(candidates.index(last) + 1) % len(candidates)]
        return candidates[0]
    return min(candidates, key=lambda email: (loads.get(email, 0), candidates.index(email)))


def on_duty(config: Config, now: datetime) -> bool:
    calendar = calendar_for(config.calendar)
    local = now.astimezone(calendar.timezone)
    return any(start <= local < end for start, end in calendar.intervals(local.date()))


def assign_on_arrival(
    config: Config, session: Session, ticket: Ticket, contract: ContractConfig | None, now: datetime
) -> tuple[str, str] | None:
    """Assigns and returns (reason, explanation) for the event log; None when switched off."""
    mode = config.assignment_mode
    if mode == "none":
        return None
    if not on_duty(config, now):
        return "off_duty", "outside working time by the calendar: left for #take"
    active = set(session.scalars(select(Engineer.email).where(Engineer.active.is_(True))))
    wanted = (
        contract.engineers
        if contract and contract.engineers
        else [e.email for e in config.engineers]
    )
    candidates = [email for email in wanted if email in active]
    loads = dict(
        session.execute(
            select(Engineer.email, func.count(Ticket.id))
            .join(Ticket, Ticket.assignee_id == Engineer.id)
            .where(Ticket.status.not_in(("resolved", "closed")))
            .group_by(Engineer.email)
        ).all()
    )
    state = session.get(SchedulerState, ROUND_ROBIN_STATE)
    chosen = choose_engineer(mode, candidates, loads, state.value if state else None)
    if chosen is None:
        return "no_engineer", "no active engineer to assign"
    engineer = repo.engineer_by_email(session, chosen)
    if engineer is None:
        return "no_engineer", f"{chosen} is not in the engineers table"
    ticket.assignee_id = engineer.id
    if state is None:
        session.add(SchedulerState(name=ROUND_ROBIN_STATE, value=chosen, updated_at=now))
    else:
        state.value, state.updated_at = chosen, now
    load = loads.get(chosen, 0)
    return mode, f"assigned to {chosen} ({mode}, {load} open tickets before this one)"
