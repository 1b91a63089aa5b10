package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// TraceConfig says where spans go.
type TraceConfig struct {
	// Endpoint is an OTLP/HTTP endpoint ("http://collector:4318"); empty
	// means spans are created (trace context still flows through every
	// hop) but not sampled or exported.
	Endpoint string
	// Sample is the share of new traces kept, 0 to 1; a trace started
	// elsewhere keeps its parent's decision.
	Sample float64
	// FlushEvery is how often batched spans are exported.
	FlushEvery time.Duration
}

// NewTracing builds the service's tracer provider and installs it, with
// W3C trace-context propagation, as the process's provider: the Pub/Sub
// client's own tracing uses the global one. Shutdown flushes what is
// buffered; call it last.
func NewTracing(ctx context.Context, service string, cfg TraceConfig) (*sdktrace.TracerProvider, error) {
	res := resource.NewSchemaless(attribute.String("service.name", service))
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if cfg.Endpoint == "" {
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	} else {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("trace endpoint %q: want http(s)://host:port", cfg.Endpoint)
		}
		exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(cfg.Endpoint+"/v1/traces"))
		if err != nil {
			return nil, fmt.Errorf("create trace exporter: %w", err)
		}
		opts = append(opts,
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.Sample))),
			sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(max(cfg.FlushEvery, 100*time.Millisecond))))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp, nil
}

// Traceparent returns the W3C traceparent of ctx's span, "" if none.
func Traceparent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// WithTraceparent returns ctx carrying the remote span context of a W3C
// traceparent, so spans started from it join that trace.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}

// JobAttributes describe a job on a span: who, which, and how much of its
// SLA is left.
func JobAttributes(tenant, job string, deadline time.Time) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("herald.tenant_id", tenant),
		attribute.String("herald.job_id", job),
		attribute.String("herald.deadline", deadline.UTC().Format(time.RFC3339)),
		attribute.Float64("herald.sla_remaining_seconds", time.Until(deadline).Seconds()),
	}
}

// Tracer is the tracer Herald's own spans come from.
func Tracer() trace.Tracer { return otel.Tracer("herald") }
