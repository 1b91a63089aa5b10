package api

import (
	"testing"
	"time"

	"herald/ingest/internal/sla"
	"herald/ingest/internal/store"
)

// TestJobViewAgreesWithTheOpsPage: the job API and /ops judge a job with
// one function, so a partner and an operator never see two verdicts.
func TestJobViewAgreesWithTheOpsPage(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	submitted := now.Add(-time.Hour)
	at := func(d time.Duration) *time.Time { x := submitted.Add(d); return &x }
	planned := at(time.Minute)
	for _, tc := range []struct {
		name string
		job  store.JobStatus
		want string
	}{
		{"nothing final yet", store.JobStatus{Planned: 1000, PlannedAt: planned}, sla.Waiting},
		{"half the window gone with nothing final", store.JobStatus{SubmittedAt: now.Add(-3 * time.Hour), Planned: 1000, PlannedAt: planned}, sla.AtRisk},
		{"going fast", store.JobStatus{Planned: 1000, PlannedAt: planned, Sent: 900, FirstSentAt: at(2 * time.Minute), LastDoneAt: at(time.Hour)}, sla.OnTrack},
		// 100 of 1,000 in 50 minutes: done in 7.5 hours, after the deadline.
		{"too slow", store.JobStatus{Planned: 1000, PlannedAt: planned, Sent: 100, FirstSentAt: at(10 * time.Minute), LastDoneAt: at(time.Hour)}, sla.AtRisk},
		// 220 of 1,000 in 50 minutes: done 3 h 57 m after submission, before
		// the deadline but in the window's last tenth (from 3 h 36 m).
		{"finishing in the last tenth", store.JobStatus{Planned: 1000, PlannedAt: planned, Sent: 220, FirstSentAt: at(10 * time.Minute), LastDoneAt: at(time.Hour)}, sla.AtRisk},
		{"complete in time", store.JobStatus{Planned: 10, PlannedAt: planned, Sent: 10, FirstSentAt: at(2 * time.Minute), LastDoneAt: at(3 * time.Minute)}, sla.Met},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := tc.job
			j.JobState = store.StateActive
			if j.SubmittedAt.IsZero() {
				j.SubmittedAt = submitted
			}
			j.Deadline = j.SubmittedAt.Add(4 * time.Hour)
			v := jobView(j, now)
			ops := sla.Judge(sla.Progress{SubmittedAt: j.SubmittedAt, Deadline: j.Deadline, Planned: j.Planned,
				PlanningDone: true, Done: j.Done(), FirstDoneAt: j.FirstSentAt, LastDoneAt: j.LastDoneAt}, now)
			if v.SLA != tc.want || v.SLA != ops.State {
				t.Errorf("job API says %q, the ops page %q; want %q", v.SLA, ops.State, tc.want)
			}
		})
	}
}
