-- The quiet-hours functions are evaluated for every recipient a batch claims.
-- Written with a FROM clause, PostgreSQL ran each as a separate SQL function
-- call (about five per recipient in a 1,000,000-recipient run); written as one
-- expression that reads its timestamp once, the planner inlines them into the
-- claim statement.

-- +goose Up
-- +goose StatementBegin
-- herald_in_quiet_hours reports whether a local time of day falls in the
-- window [start_minute, end_minute) of minutes after midnight; a window may
-- wrap midnight. A negative start means no quiet hours. The minute is in the
-- window when its distance after the start, around the clock, is less than
-- the window's length.
CREATE OR REPLACE FUNCTION herald_in_quiet_hours(local_now timestamp, start_minute integer, end_minute integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN start_minute < 0 OR start_minute = end_minute THEN false
        ELSE (floor(date_part('epoch', local_now::time) / 60)::integer - start_minute + 1440) % 1440
             < (end_minute - start_minute + 1440) % 1440
    END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
-- herald_quiet_hours_end is the next moment, after local_now in time zone
-- tz, at which the local clock shows end_minute: the day of (local_now -
-- end_minute), plus one day, plus end_minute.
CREATE OR REPLACE FUNCTION herald_quiet_hours_end(local_now timestamp, tz text, end_minute integer)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT (date_trunc('day', local_now - make_interval(mins => greatest(end_minute, 0)))
            + interval '1 day' + make_interval(mins => greatest(end_minute, 0))) AT TIME ZONE tz
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION herald_in_quiet_hours(local_now timestamp, start_minute integer, end_minute integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN start_minute < 0 OR start_minute = end_minute THEN false
        WHEN start_minute < end_minute THEN m >= start_minute AND m < end_minute
        ELSE m >= start_minute OR m < end_minute
    END
    FROM (SELECT (extract(hour FROM local_now) * 60 + extract(minute FROM local_now))::integer AS m) x
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION herald_quiet_hours_end(local_now timestamp, tz text, end_minute integer)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT (CASE WHEN e > local_now THEN e ELSE e + interval '1 day' END) AT TIME ZONE tz
    FROM (SELECT date_trunc('day', local_now) + make_interval(mins => greatest(end_minute, 0)) AS e) x
$$;
-- +goose StatementEnd
