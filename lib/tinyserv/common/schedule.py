"""Crontab schedules (pure): parse `*/5 * * * *` or `@daily`, and find the minutes they name.

Five fields — minute, hour, day of month, month, day of week — each `*`, a number, a range
`a-b`, a step `*/n` or `a-b/n` (`a/n`: from a to the end), or a comma list of those; months
and weekdays by name too (jan, mon); 0 and 7 are Sunday. As in Vixie cron, when both day
fields are restricted a day matches either one. Schedules are in UTC, as on Heroku Scheduler.
"""

import calendar
import collections
import time

from tinyserv.common.errors import TinyservError

Schedule = collections.namedtuple("Schedule", "text minutes hours days months weekdays any_day any_weekday")

SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
              "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, lowest, highest, names (their index + lowest is their number)
FIELDS = [("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
          ("month", 1, 12, MONTHS), ("day of week", 0, 7, WEEKDAYS)]
HORIZON_DAYS = 8 * 366 + 1  # every schedule that can run at all runs within this (29 February: every 4 years)


class ScheduleError(TinyservError):
    """A schedule that is not crontab syntax, or that never runs."""


def parse(text):
    """A Schedule from crontab text; ScheduleError saying what is wrong and how it should look."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError("a schedule must be text like '*/5 * * * *' or '@daily'")
    words = text.split()
    if len(words) == 1 and words[0].startswith("@"):
        if words[0].lower() not in SHORTHANDS:
            raise ScheduleError("%r is not a schedule: the @ forms are %s" % (text, ", ".join(sorted(SHORTHANDS))))
        words = SHORTHANDS[words[0].lower()].split()
    if len(words) != 5:
        raise ScheduleError("%r has %d field%s; a schedule has 5: minute hour day-of-month month day-of-week "
                            "(e.g. '*/5 * * * *')" % (text, len(words), "" if len(words) == 1 else "s"))
    sets = [parse_field(word, *field) for word, field in zip(words, FIELDS)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    schedule = Schedule(text.strip(), sets[0], sets[1], sets[2], sets[3], weekdays,
                        words[2].startswith("*"), words[4].startswith("*"))
    if next_after(schedule, 0) is None:
        raise ScheduleError("%r never runs (no such day)" % text)
    return schedule


def parse_field(word, what, lowest, highest, names):
    """One field as the frozenset of numbers it names."""
    found = set()
    for item in word.split(","):
        found |= parse_item(item, word, what, lowest, highest, names)
    return frozenset(found)


def parse_item(item, word, what, lowest, highest, names):
    """'*', 'n', 'a-b', with an optional '/step' -> the numbers it names."""
    span, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or not step_text.isascii() or int(step_text) < 1:
            raise ScheduleError("bad %s %r: a step is a whole number of 1 or more, as in */5" % (what, word))
        step = int(step_text)
    if span == "*":
        start, end = lowest, highest
    else:
        first, dash, last = span.partition("-")
        start = number(first, word, what, lowest, highest, names)
        end = number(last, word, what, lowest, highest, names) if dash else (highest if slash else start)
        if end < start:
            raise ScheduleError("bad %s %r: the range %s goes backwards" % (what, word, span))
    return set(range(start, end + 1, step))


def number(text, word, what, lowest, highest, names):
    """A field's number or name, within its range."""
    if names and text.lower() in names:
        return names.index(text.lower()) + (1 if what == "month" else 0)
    if not text.isdigit() or not text.isascii():
        hint = " or a name (%s)" % ", ".join(names[:3] + ["..."]) if names else ""
        raise ScheduleError("bad %s %r: expected *, a number from %d to %d%s" % (what, word, lowest, highest, hint))
    value = int(text)
    if not lowest <= value <= highest:
        raise ScheduleError("bad %s %r: %d is not from %d to %d" % (what, word, value, lowest, highest))
    return value


def day_matches(schedule, tm):
    """Does the day of tm (a UTC struct_time) match the day-of-month and day-of-week fields?"""
    in_month = tm.tm_mday in schedule.days
    in_week = (tm.tm_wday + 1) % 7 in schedule.weekdays  # struct_time: Monday is 0; crontab: Sunday is 0
    if schedule.any_day or schedule.any_weekday:
        return in_month and in_week
    return in_month or in_week


def matches(schedule, when):
    """Does the minute that contains `when` (seconds since the epoch) match?"""
    tm = time.gmtime(when)
    return (tm.tm_min in schedule.minutes and tm.tm_hour in schedule.hours and tm.tm_mon in schedule.months
            and day_matches(schedule, tm))


def next_after(schedule, when):
    """The first minute boundary strictly after `when` that matches (seconds since the epoch), or None."""
    start = (int(when) // 60 + 1) * 60
    day = start - start % 86400
    hours, minutes = sorted(schedule.hours), sorted(schedule.minutes)
    for _ in range(HORIZON_DAYS):
        tm = time.gmtime(day)
        if tm.tm_mon in schedule.months and day_matches(schedule, tm):
            for hour in hours:
                if day + hour * 3600 + 3599 < start:
                    continue
                for minute in minutes:
                    moment = day + hour * 3600 + minute * 60
                    if moment >= start:
                        return moment
        day += 86400
    return None


def describe(when):
    """A moment as the UTC text `tinyserv cron` shows: 2026-11-28T05:00:00Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)) if when is not None else ""


def utc(text):
    """'2026-11-28T05:00:00Z' -> seconds since the epoch (for tests and tables)."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
