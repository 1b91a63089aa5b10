// Package ops serves the operators' live view of Herald at /ops: every
// running job's progress and ETA against its deadline, the pipeline's
// backlog and lag, and each provider's rate against its ceiling. It is plain
// HTML and JavaScript, refreshed every two seconds from /ops/api/overview;
// nothing needs building. It is not a partner route: the edge lets only
// operators reach it.
package ops

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"herald/ingest/internal/sla"
)

var (
	//go:embed sql/jobs.sql
	jobsSQL string
	//go:embed sql/backlog.sql
	backlogSQL string
	//go:embed sql/buckets.sql
	bucketsSQL string
	//go:embed page.html
	page []byte
)

// Page serves /ops and its data.
type Page struct {
	db *pgxpool.Pool
	// stages maps a stage name to its service's /metrics URL; its lag and
	// throughput are read from there.
	stages map[string]string
	log    *slog.Logger
	client *http.Client
	now    func() time.Time
}

// New returns the page. stages may be empty (no per-stage view).
func New(db *pgxpool.Pool, stages map[string]string, log *slog.Logger) *Page {
	return &Page{db: db, stages: stages, log: log, client: &http.Client{Timeout: 2 * time.Second}, now: time.Now}
}

// RoleHeader carries the caller's role claim from the edge; only "ops"
// may see the page, whatever the edge's policy says.
const RoleHeader = "X-Herald-Role"

// Handler serves GET /ops and GET /ops/api/overview to operators.
func (p *Page) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ops", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /ops/api/overview", func(w http.ResponseWriter, r *http.Request) {
		o, err := p.Overview(r.Context())
		if err != nil {
			p.log.ErrorContext(r.Context(), "ops overview", "error", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":{"code":"internal","message":"overview unavailable"}}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(o)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(RoleHeader) != "ops" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"code":"forbidden","message":"the ops page is for operators: it needs a token with role ops"}}` + "\n"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Overview is everything the page shows.
type Overview struct {
	At      time.Time `json:"at"`
	Jobs    []Job     `json:"jobs"`
	Backlog Backlog   `json:"backlog"`
	Stages  []Stage   `json:"stages"`
	Buckets []Bucket  `json:"buckets"`
}

// Job is one job's progress against its deadline.
type Job struct {
	Tenant       string    `json:"tenant"`
	ID           string    `json:"id"`
	Campaign     string    `json:"campaign"`
	SubmittedAt  time.Time `json:"submitted_at"`
	Deadline     time.Time `json:"deadline"`
	Planned      int64     `json:"planned"`
	PlanningDone bool      `json:"planning_done"`
	Done         int64     `json:"done"`
	Sent         int64     `json:"sent"`
	Failed       int64     `json:"failed"`
	Suppressed   int64     `json:"suppressed"`
	Other        int64     `json:"other"`
	PerSecond    float64   `json:"per_second"`
	ETA          time.Time `json:"eta"`
	SLA          string    `json:"sla"`
}

// Backlog is the work between planning and its final outcome.
type Backlog struct {
	Batches       int64   `json:"batches"`
	OldestSeconds float64 `json:"oldest_seconds"`
	Redriven      int64   `json:"redriven"`
}

// Stage is one service's view of its own queue.
type Stage struct {
	Name string `json:"name"`
	Up   bool   `json:"up"`
	// LagSeconds is the age of the newest message the stage started on
	// when it started on it (from herald_stage_lag_seconds).
	LagSeconds float64 `json:"lag_seconds"`
	InFlight   float64 `json:"in_flight"`
	Handled    float64 `json:"handled"`
}

// Bucket is one rate limit.
type Bucket struct {
	Name      string   `json:"name"`
	Rate      float64  `json:"rate"`
	Ceiling   float64  `json:"ceiling"`
	Headroom  float64  `json:"headroom"`
	Throttled *float64 `json:"throttled_seconds_ago,omitempty"`
}

// Overview reads the current state.
func (p *Page) Overview(ctx context.Context) (*Overview, error) {
	now := p.now()
	o := &Overview{At: now, Jobs: []Job{}, Stages: []Stage{}, Buckets: []Bucket{}}
	rows, _ := p.db.Query(ctx, jobsSQL)
	for rows.Next() {
		var j Job
		var expired, ambiguous, capped int64
		var first, last *time.Time
		if err := rows.Scan(&j.Tenant, &j.ID, &j.Campaign, &j.SubmittedAt, &j.Deadline, &j.Planned, &j.PlanningDone,
			&j.Sent, &j.Failed, &j.Suppressed, &expired, &ambiguous, &capped, &first, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read jobs: %w", err)
		}
		j.Other = expired + ambiguous + capped
		j.Done = j.Sent + j.Failed + j.Suppressed + j.Other
		v := sla.Judge(sla.Progress{SubmittedAt: j.SubmittedAt, Deadline: j.Deadline, Planned: j.Planned,
			PlanningDone: j.PlanningDone, Done: j.Done, FirstDoneAt: first, LastDoneAt: last}, now)
		j.PerSecond, j.ETA, j.SLA = v.PerSecond, v.ETA, v.State
		o.Jobs = append(o.Jobs, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	if err := p.db.QueryRow(ctx, backlogSQL).Scan(&o.Backlog.Batches, &o.Backlog.OldestSeconds, &o.Backlog.Redriven); err != nil {
		return nil, fmt.Errorf("read backlog: %w", err)
	}
	rows, _ = p.db.Query(ctx, bucketsSQL)
	var b Bucket
	_, err := pgx.ForEachRow(rows, []any{&b.Name, &b.Rate, &b.Ceiling, &b.Throttled}, func() error {
		b.Headroom = b.Rate / b.Ceiling
		o.Buckets = append(o.Buckets, b)
		b = Bucket{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read rate buckets: %w", err)
	}
	o.Stages = p.scrape(ctx)
	return o, nil
}

// scrape reads each stage's metrics in parallel; a stage that does not
// answer is shown down.
func (p *Page) scrape(ctx context.Context) []Stage {
	out := make([]Stage, 0, len(p.stages))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, url := range p.stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := Stage{Name: name}
			if m, err := p.metrics(ctx, url); err == nil {
				s.Up = true
				s.LagSeconds = m["herald_stage_lag_seconds"]
				s.InFlight = m["herald_stage_in_flight"]
				s.Handled = m["herald_stage_messages_total"]
			}
			mu.Lock()
			out = append(out, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	order := map[string]int{"ingest": 0, "recommend": 1, "render": 2, "dispatch": 3}
	sortStages(out, order)
	return out
}

func sortStages(s []Stage, order map[string]int) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && order[s[j].Name] < order[s[j-1].Name]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// metrics fetches a Prometheus text exposition and sums the samples of
// each metric name (over all label sets).
func (p *Page) metrics(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
			_, rest, ok = strings.Cut(line, "} ")
		}
		if !ok {
			continue
		}
		value, _, _ := strings.Cut(rest, " ")
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] += v
		}
	}
	return m, sc.Err()
}
