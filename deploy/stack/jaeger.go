package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// JaegerVersion is the Jaeger (v2, OpenTelemetry-collector based) built
// for local traces.
const JaegerVersion = "v1.76.0"

// Jaeger is a local Jaeger with in-memory storage: OTLP/HTTP in, its query
// API (and UI, where its assets are built in) out.
type Jaeger struct {
	// OTLP is the endpoint to give the services (without /v1/traces).
	OTLP string
	// UI is the base URL of the query API and UI.
	UI  string
	cmd *exec.Cmd
}

// StartJaeger builds Jaeger from the Go module proxy once per machine
// (about four minutes; cached under ~/.cache/herald) and starts it on free
// loopback ports, its files in dir.
func StartJaeger(ctx context.Context, dir string, progress func(string)) (*Jaeger, error) {
	bin, err := buildJaeger(ctx, progress)
	if err != nil {
		return nil, err
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	config := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, ports[0], ports[1], ports[2])
	path := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("write jaeger config: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "logs", "jaeger.log"))
	if err != nil {
		return nil, fmt.Errorf("create jaeger log: %w", err)
	}
	cmd := exec.Command(bin, "--config", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start jaeger: %w", err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	j := &Jaeger{OTLP: fmt.Sprintf("http://127.0.0.1:%d", ports[2]), UI: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), cmd: cmd}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(j.UI + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return j, nil
			}
		}
		if time.Now().After(deadline) {
			j.Stop()
			return nil, errors.New("jaeger did not answer within a minute; see " + logf.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TraceURL is where a trace can be read (the JSON API always; the UI at
// /trace/ID where Jaeger's UI assets are built in).
func (j *Jaeger) TraceURL(traceID string) string { return j.UI + "/api/traces/" + traceID }

// SpansByService counts the spans of one trace per service, waiting up to
// wait for the services' batched exports to arrive.
func (j *Jaeger) SpansByService(ctx context.Context, traceID string, wait time.Duration) (map[string]int, error) {
	deadline := time.Now().Add(wait)
	for {
		counts, err := j.spans(ctx, traceID)
		if err == nil && len(counts) > 1 || time.Now().After(deadline) {
			return counts, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (j *Jaeger) spans(ctx context.Context, traceID string) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.TraceURL(traceID), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return map[string]int{}, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jaeger: trace %s: %s", traceID, resp.Status)
	}
	var body struct {
		Data []struct {
			Spans []struct {
				ProcessID string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("jaeger: trace %s: %w", traceID, err)
	}
	counts := map[string]int{}
	for _, t := range body.Data {
		for _, s := range t.Spans {
			counts[t.Processes[s.ProcessID].ServiceName]++
		}
	}
	return counts, nil
}

// Stop ends Jaeger.
func (j *Jaeger) Stop() {
	if j.cmd.Process != nil {
		_ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGTERM)
	}
}

// buildJaeger returns the cached Jaeger binary, building it first if
// needed. Jaeger's module has a replace directive, so `go install pkg@v`
// refuses it; it is built inside a copy of the module instead.
func buildJaeger(ctx context.Context, progress func(string)) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "herald", "jaeger-"+JaegerVersion)
	bin := filepath.Join(dir, "jaeger")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	progress("building Jaeger " + JaegerVersion + " from the Go module proxy, once per machine (about four minutes)…")
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/jaegertracing/jaeger@"+JaegerVersion).Output()
	if err != nil {
		return "", fmt.Errorf("download jaeger: %w", err)
	}
	var src string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), `"Dir": "`); ok {
			src = strings.TrimSuffix(v, `",`)
		}
	}
	if src == "" {
		return "", errors.New("download jaeger: no module directory")
	}
	work, err := os.MkdirTemp("", "herald-jaeger-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if out, err := exec.CommandContext(ctx, "cp", "-r", src+"/.", work).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy jaeger source: %w: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", work).CombinedOutput(); err != nil {
		return "", fmt.Errorf("copy jaeger source: %w: %s", err, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/jaeger")
	build.Dir = work
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build jaeger: %w: %s", err, out)
	}
	return bin, nil
}
