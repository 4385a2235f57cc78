"""Staff rules: how long a comp may last, who may change whose role. Pure functions."""

from __future__ import annotations

from datetime import date

from membership.accounts.models import Role

MAX_COMP_YEARS = 5


def comp_end_problem(today: date, ends_on: date) -> str | None:
    """Why a comp may not end on ``ends_on`` (it must be in the future, at most 5 years on)."""
    if ends_on <= today:
        return "Choose an end date in the future."
    try:
        limit = today.replace(year=today.year + MAX_COMP_YEARS)
    except ValueError:  # 29 February
        limit = today.replace(year=today.year + MAX_COMP_YEARS, day=28)
    if ends_on > limit:
        return f"A comp lasts at most {MAX_COMP_YEARS} years (until {limit.isoformat()})."
    return None


def role_change_problem(
    *, actor_id: int, member_id: int, current: Role, new: Role, admins: int
) -> str | None:
    """Why an admin may not give this member this role; None if they may."""
    if current is new:
        return f"This member already has the {new.value} role."
    if actor_id == member_id:
        return "You cannot change your own role: ask another admin."
    if current is Role.ADMIN and admins <= 1:
        return "This is the last admin: make someone else admin first."
    return None
