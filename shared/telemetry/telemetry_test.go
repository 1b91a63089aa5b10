package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// A line logged inside a span names the span's trace, so an operator can go
// from a log line to its trace; a line outside any span names none.
func TestLoggerStampsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "dispatch", "info")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "send")
	log.With("job_id", "j1").InfoContext(ctx, "batch sent")
	span.End()
	log.InfoContext(context.Background(), "idle")

	dec := json.NewDecoder(&buf)
	var inSpan, outside map[string]any
	if err := dec.Decode(&inSpan); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&outside); err != nil {
		t.Fatal(err)
	}
	sc := span.SpanContext()
	if inSpan["trace_id"] != sc.TraceID().String() || inSpan["span_id"] != sc.SpanID().String() {
		t.Errorf("line in a span = %v, want trace_id %s span_id %s", inSpan, sc.TraceID(), sc.SpanID())
	}
	if inSpan["service"] != "dispatch" || inSpan["job_id"] != "j1" {
		t.Errorf("line in a span lost its attributes: %v", inSpan)
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("line outside any span has a trace_id: %v", outside)
	}
}

func TestLoggerRefusesUnknownLevel(t *testing.T) {
	if _, err := NewLogger(&bytes.Buffer{}, "ingest", "loud"); err == nil {
		t.Fatal("NewLogger accepted level \"loud\"")
	}
}
