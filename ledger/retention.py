"""The retention schedule (DEL-1, DEL-6): how long things are kept, as data in the repo.

`ledger/retention.json` is the schedule the purge job applies; an operator points
`LEDGER_RETENTION` at another file to change it, and a change is a reviewed commit, not a flag
flipped at run time. Loading refuses a schedule that is missing a period or gives one that is
not a positive whole number, so a typo can never mean "keep for ever" or "delete at once".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta


class ScheduleInvalid(ValueError):
    pass


@dataclass(frozen=True)
class GraceWindow:
    """DEL-1, DEL-2: how long a soft-deleted account can still be recovered."""

    days: int

    def ends(self, requested_at: datetime) -> datetime:
        return requested_at + timedelta(days=self.days)

    def is_open(self, requested_at: datetime, now: datetime) -> bool:
        return now < self.ends(requested_at)


@dataclass(frozen=True)
class RetentionSchedule:
    name: str  # the schedule's own version, e.g. its date
    grace: GraceWindow
    inactive_months: int  # DEL-6: unused this long, an account is soft-deleted
    warn_months_before: int  # teachers are warned this long before

    @classmethod
    def load(cls, path: str) -> RetentionSchedule:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
            inactive = raw["inactive_accounts"]
            schedule = cls(str(raw["schedule"]), GraceWindow(_positive(raw, "grace_window_days")),
                           _positive(inactive, "months_unused"),
                           _positive(inactive, "warn_teachers_months_before"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ScheduleInvalid(f"retention schedule {path}: {error}") from None
        if schedule.warn_months_before >= schedule.inactive_months:
            raise ScheduleInvalid("the warning must come before the inactivity deadline")
        return schedule

    def inactive_since(self, now: datetime) -> datetime:
        """Accounts last active before this are due for the inactivity deletion."""
        return months_before(now, self.inactive_months)

    def warn_since(self, now: datetime) -> datetime:
        """Teachers last active before this are warned (a month before by default)."""
        return months_before(now, self.inactive_months - self.warn_months_before)


    def deleted_after_warning(self, warned_at: datetime) -> datetime:
        """When a teacher warned now is soft-deleted if they stay away."""
        return months_before(warned_at, -self.warn_months_before)


def _positive(raw: dict[str, object], key: str) -> int:
    value = raw[key]
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{key} must be a positive whole number")
    return value


def months_before(moment: datetime, months: int) -> datetime:
    """Calendar months back (forward, if negative); the 31st becomes the month's last day
    where it is shorter."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    month += 1
    day = moment.day
    while True:
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            day -= 1
