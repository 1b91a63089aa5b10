package sla_test

import (
	"testing"
	"time"

	"herald/ingest/internal/sla"
)

func TestJudge(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	base := sla.Progress{SubmittedAt: t0, Deadline: t0.Add(4 * time.Hour), Planned: 1000, PlanningDone: true}
	tests := []struct {
		name  string
		p     func(sla.Progress) sla.Progress
		now   time.Duration
		state string
		eta   time.Duration
	}{
		{"nothing yet, early", func(p sla.Progress) sla.Progress { return p }, time.Minute, sla.Waiting, 0},
		{"nothing yet, late", func(p sla.Progress) sla.Progress { return p }, 3 * time.Hour, sla.AtRisk, 0},
		{"fast enough", func(p sla.Progress) sla.Progress {
			p.Done, p.FirstDoneAt = 500, at(0)
			return p
		}, time.Hour, sla.OnTrack, 2 * time.Hour},
		{"too slow", func(p sla.Progress) sla.Progress {
			p.Done, p.FirstDoneAt = 100, at(0)
			return p
		}, time.Hour, sla.AtRisk, 10 * time.Hour},
		{"deadline passed", func(p sla.Progress) sla.Progress {
			p.Done, p.FirstDoneAt = 999, at(0)
			return p
		}, 5 * time.Hour, sla.Breached, 0},
		{"complete in time", func(p sla.Progress) sla.Progress {
			p.Done, p.FirstDoneAt, p.LastDoneAt = 1000, at(0), at(time.Hour)
			return p
		}, 6 * time.Hour, sla.Met, time.Hour},
		{"complete late", func(p sla.Progress) sla.Progress {
			p.Done, p.FirstDoneAt, p.LastDoneAt = 1000, at(0), at(5*time.Hour)
			return p
		}, 6 * time.Hour, sla.Missed, 5 * time.Hour},
		{"still planning is never complete", func(p sla.Progress) sla.Progress {
			p.PlanningDone, p.Done, p.FirstDoneAt = false, 1000, at(0)
			return p
		}, time.Hour, sla.OnTrack, time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := sla.Judge(tc.p(base), t0.Add(tc.now))
			var eta time.Duration
			if !j.ETA.IsZero() {
				eta = j.ETA.Sub(t0)
			}
			if j.State != tc.state || eta != tc.eta {
				t.Fatalf("got %s ETA +%s, want %s ETA +%s", j.State, eta, tc.state, tc.eta)
			}
		})
	}
}
