package pgdb_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"herald/devtools/testenv"
)

// inQuietHours is the rule herald_in_quiet_hours implements: the minute of
// the day falls in [start, end), a window that may wrap midnight; a negative
// start, or an empty window, means none.
func inQuietHours(minute, start, end int) bool {
	switch {
	case start < 0 || start == end:
		return false
	case start < end:
		return minute >= start && minute < end
	default:
		return minute >= start || minute < end
	}
}

func TestInQuietHoursEveryMinute(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	windows := [][2]int{{1260, 480}, {480, 1260}, {0, 60}, {1380, 0}, {0, 1439}, {1439, 0}, {600, 600}, {-1, 0}, {-1, 480}}
	for _, w := range windows {
		var got []bool
		// 59.9 seconds into each minute: the function counts whole minutes.
		err := db.QueryRow(ctx, `SELECT array_agg(herald_in_quiet_hours(timestamp '2026-11-26' + make_interval(mins => m, secs => 59.9), $1, $2) ORDER BY m)
			FROM generate_series(0, 1439) m`, w[0], w[1]).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1440 {
			t.Fatalf("window %v: %d answers, want 1440", w, len(got))
		}
		for m, in := range got {
			if want := inQuietHours(m, w[0], w[1]); in != want {
				t.Fatalf("window %v, minute %d: in quiet hours %v, want %v", w, m, in, want)
			}
		}
	}
}

func TestQuietHoursEnd(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	for _, tz := range []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			t.Fatal(err)
		}
		for _, local := range []string{"2026-11-26 22:15:00", "2026-11-26 07:59:59", "2026-11-26 08:00:00", "2026-11-26 00:00:00", "2026-12-31 23:30:00", "2026-03-28 23:00:00"} {
			for _, end := range []int{480, 0, 1439, -5} {
				now, err := time.Parse(time.DateTime, local)
				if err != nil {
					t.Fatal(err)
				}
				// The next wall-clock end time strictly after now, in tz.
				mins := max(end, 0)
				e := time.Date(now.Year(), now.Month(), now.Day(), mins/60, mins%60, 0, 0, time.UTC)
				if !e.After(now) {
					e = e.AddDate(0, 0, 1)
				}
				want := time.Date(e.Year(), e.Month(), e.Day(), e.Hour(), e.Minute(), 0, 0, loc)
				var got time.Time
				if err := db.QueryRow(ctx, `SELECT herald_quiet_hours_end($1::timestamp, $2, $3)`, local, tz, end).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if !got.Equal(want) {
					t.Errorf("%s in %s, end minute %d: quiet hours end %v, want %v", local, tz, end, got.In(loc), want)
				}
			}
		}
	}
}

// The functions run for every recipient a batch claims; the planner must
// inline them into the statement instead of calling them one by one.
func TestQuietHoursFunctionsAreInlined(t *testing.T) {
	db := testenv.DB(t)
	rows, err := db.Query(context.Background(), `EXPLAIN (VERBOSE)
		SELECT herald_in_quiet_hours(now() AT TIME ZONE tz, 1260, 480), herald_quiet_hours_end(now() AT TIME ZONE tz, tz, 480)
		FROM (VALUES ('UTC'), ('Europe/Berlin')) v(tz)`)
	if err != nil {
		t.Fatal(err)
	}
	var plan strings.Builder
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(line + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan.String(), "herald_") {
		t.Fatalf("quiet-hours functions called, not inlined:\n%s", plan.String())
	}
}
