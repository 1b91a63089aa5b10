// Package sla judges a job against its deadline: how fast it is going,
// when it will finish at that pace, and whether that is in time. The job
// API, the ops page and the alerts all use this one judgement, so they never
// disagree about a job.
package sla

import (
	"math"
	"time"
)

// States of a job against its deadline.
const (
	OnTrack  = "on_track" // finishes before the deadline at the current pace
	AtRisk   = "at_risk"  // would finish in the last tenth of its window, or after the deadline
	Breached = "breached" // the deadline passed with recipients still pending
	Met      = "met"      // complete, last delivery before the deadline
	Missed   = "missed"   // complete, but later than the deadline
	Waiting  = "waiting"  // nothing delivered yet, too early to judge
)

// Progress is what is known about a job.
type Progress struct {
	SubmittedAt time.Time
	Deadline    time.Time
	// Planned is the number of recipients; PlanningDone says it is final.
	Planned      int64
	PlanningDone bool
	// Done counts recipients with a final outcome.
	Done int64
	// FirstDoneAt and LastDoneAt bound the final outcomes in time.
	FirstDoneAt *time.Time
	LastDoneAt  *time.Time
}

// Judgement is the verdict on a job.
type Judgement struct {
	State string
	// PerSecond is final outcomes per second since the first one.
	PerSecond float64
	// ETA is when the job will be done at PerSecond; zero if unknown.
	ETA time.Time
}

// Judge assesses p at now.
func Judge(p Progress, now time.Time) Judgement {
	var j Judgement
	complete := p.PlanningDone && p.Done >= p.Planned
	if p.FirstDoneAt != nil {
		end := now
		if complete && p.LastDoneAt != nil {
			end = *p.LastDoneAt
		}
		if secs := end.Sub(*p.FirstDoneAt).Seconds(); secs > 0 {
			j.PerSecond = float64(p.Done) / secs
		}
	}
	switch {
	case complete:
		last := now
		if p.LastDoneAt != nil {
			last = *p.LastDoneAt
		}
		j.ETA = last
		if last.After(p.Deadline) {
			j.State = Missed
		} else {
			j.State = Met
		}
		return j
	case now.After(p.Deadline):
		j.State = Breached
		return j
	}
	if j.PerSecond > 0 {
		remaining := float64(p.Planned - p.Done)
		j.ETA = now.Add(time.Duration(math.Max(remaining, 0) / j.PerSecond * float64(time.Second)))
	}
	window := p.Deadline.Sub(p.SubmittedAt)
	switch {
	case j.ETA.IsZero():
		// Nothing final yet: only a job that has used most of its window
		// without any delivery is already at risk.
		if now.Sub(p.SubmittedAt) > window/2 {
			j.State = AtRisk
		} else {
			j.State = Waiting
		}
	case j.ETA.After(p.Deadline.Add(-window / 10)):
		j.State = AtRisk
	default:
		j.State = OnTrack
	}
	return j
}
