"""schedule.py: crontab schedules parsed, matched and advanced (pure, table-driven)."""

import pytest

from tinyserv.common import schedule
from tinyserv.common.schedule import ScheduleError, next_after, parse, utc


@pytest.mark.parametrize("text, field, expected", [
    ("* * * * *", "minutes", set(range(60))),
    ("*/15 * * * *", "minutes", {0, 15, 30, 45}),
    ("5,10-12 * * * *", "minutes", {5, 10, 11, 12}),
    ("0-30/10 * * * *", "minutes", {0, 10, 20, 30}),
    ("7/20 * * * *", "minutes", {7, 27, 47}),
    ("0 9-17 * * *", "hours", set(range(9, 18))),
    ("0 0 1,15 * *", "days", {1, 15}),
    ("0 0 * jan,JUL *", "months", {1, 7}),
    ("0 0 * mar-may *", "months", {3, 4, 5}),
    ("0 0 * * mon-fri", "weekdays", {1, 2, 3, 4, 5}),
    ("0 0 * * 7", "weekdays", {0}),
    ("0 0 * * 0,7", "weekdays", {0}),
    ("@hourly", "minutes", {0}),
    ("@daily", "hours", {0}),
    ("@weekly", "weekdays", {0}),
    ("@MONTHLY", "days", {1}),
    ("  */5   *  * * *  ", "minutes", set(range(0, 60, 5))),
])
def test_each_field_names_the_numbers_crontab_gives_it(text, field, expected):
    assert getattr(parse(text), field) == expected


@pytest.mark.parametrize("text, message", [
    ("", "must be text"),
    ("* * * *", "has 4 fields; a schedule has 5"),
    ("* * * * * *", "has 6 fields"),
    ("@reboot", "'@reboot' is not a schedule"),
    ("@every 5m", "has 2 fields"),
    ("60 * * * *", "bad minute '60': 60 is not from 0 to 59"),
    ("* 24 * * *", "bad hour '24'"),
    ("* * 0 * *", "bad day of month '0'"),
    ("* * 32 * *", "bad day of month '32'"),
    ("* * * 13 *", "bad month '13'"),
    ("* * * * 8", "bad day of week '8'"),
    ("*/0 * * * *", "a step is a whole number of 1 or more"),
    ("*/x * * * *", "a step is a whole number"),
    ("5-1 * * * *", "the range 5-1 goes backwards"),
    ("a * * * *", "bad minute 'a': expected *, a number from 0 to 59"),
    ("* * * foo *", "bad month 'foo'"),
    ("1,,2 * * * *", "bad minute '1,,2'"),
    ("٣ * * * *", "bad minute"),
    ("0 0 30 2 *", "never runs"),
    ("0 0 31 4,6,9,11 *", "never runs"),
    (None, "must be text"),
])
def test_a_bad_schedule_is_refused_saying_what_is_wrong(text, message):
    with pytest.raises(ScheduleError) as caught:
        parse(text)
    assert message in str(caught.value)


@pytest.mark.parametrize("text, after, expected", [
    ("* * * * *", "2026-11-28T05:00:00Z", "2026-11-28T05:01:00Z"),
    ("* * * * *", "2026-11-28T05:00:59Z", "2026-11-28T05:01:00Z"),
    ("*/5 * * * *", "2026-11-28T05:01:00Z", "2026-11-28T05:05:00Z"),
    ("*/5 * * * *", "2026-11-28T05:55:00Z", "2026-11-28T06:00:00Z"),
    ("@hourly", "2026-11-28T23:30:00Z", "2026-11-29T00:00:00Z"),
    ("@daily", "2026-12-31T12:00:00Z", "2027-01-01T00:00:00Z"),
    ("@weekly", "2026-11-28T00:00:00Z", "2026-11-29T00:00:00Z"),  # 28 November 2026 is a Saturday
    ("30 4 * * mon", "2026-11-28T00:00:00Z", "2026-11-30T04:30:00Z"),
    ("0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
    ("0 12 1 * *", "2026-01-31T13:00:00Z", "2026-02-01T12:00:00Z"),
    # Both day fields restricted: either matches (Vixie cron). 1 December 2026 is a Tuesday.
    ("0 0 1 * fri", "2026-11-28T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("0 0 15 * tue", "2026-11-28T00:00:00Z", "2026-12-01T00:00:00Z"),
    # One of them a star (even */2): both must match.
    ("0 0 */2 * tue", "2026-11-28T00:00:00Z", "2026-12-01T00:00:00Z"),
    ("0 0 2 * *", "2026-11-28T00:00:00Z", "2026-12-02T00:00:00Z"),
])
def test_the_next_run_is_the_first_matching_minute_after_a_moment(text, after, expected):
    assert schedule.describe(next_after(parse(text), utc(after))) == expected


@pytest.mark.parametrize("text, moment, expected", [
    ("*/5 * * * *", "2026-11-28T05:10:42Z", True),
    ("*/5 * * * *", "2026-11-28T05:11:00Z", False),
    ("0 9-17 * * mon-fri", "2026-11-30T09:00:00Z", True),
    ("0 9-17 * * mon-fri", "2026-11-28T09:00:00Z", False),
    ("0 0 1 * fri", "2026-12-04T00:00:00Z", True),
])
def test_a_moment_matches_when_its_minute_does(text, moment, expected):
    assert schedule.matches(parse(text), utc(moment)) is expected


def test_every_minute_of_an_hour_is_a_run_of_a_job_scheduled_every_minute():
    job = parse("* * * * *")
    runs, moment = [], utc("2026-11-28T05:00:00Z") - 1
    while True:
        moment = next_after(job, moment)
        if moment >= utc("2026-11-28T06:00:00Z"):
            break
        runs.append(moment)
    assert len(runs) == 60 and all(b - a == 60 for a, b in zip(runs, runs[1:]))
