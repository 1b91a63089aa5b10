package event_test

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"herald/shared/event"
	eventv1 "herald/shared/event/v1"
)

func batch() *eventv1.DispatchBatch {
	b := &eventv1.DispatchBatch{Job: &eventv1.Job{TenantId: "acme", JobId: "j1", Seq: 7,
		SubmittedAt: timestamppb.Now(), Deadline: timestamppb.Now()}}
	for range 200 {
		b.Messages = append(b.Messages, &eventv1.Rendered{CustomerId: "c", Email: "a@example.com",
			Mime: []byte(strings.Repeat("<p>the same card for many recipients</p>", 50))})
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, enc := range []string{event.Identity, event.Zstd} {
		in := batch()
		body, attrs, err := event.Encode(in, enc, "00-abc-def-01")
		if err != nil {
			t.Fatal(err)
		}
		if attrs[event.AttrTenant] != "acme" || attrs[event.AttrJob] != "j1" || attrs[event.AttrSeq] != "7" ||
			attrs[event.AttrTraceparent] != "00-abc-def-01" || attrs[event.AttrSchema] != "herald.event.v1.DispatchBatch" {
			t.Fatalf("attributes %v", attrs)
		}
		var out eventv1.DispatchBatch
		if err := event.Decode(body, attrs, &out); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(in, &out) {
			t.Fatalf("%s: decoded batch differs", enc)
		}
		raw, _ := proto.Marshal(in)
		if enc == event.Zstd && len(body)*10 > len(raw) {
			t.Fatalf("zstd body %d bytes for %d raw: similar messages must compress well", len(body), len(raw))
		}
	}
}

func TestDecodeRejectsWhatCanNeverBeProcessed(t *testing.T) {
	body, attrs, err := event.Encode(batch(), event.Zstd, "")
	if err != nil {
		t.Fatal(err)
	}
	wrongSchema := map[string]string{}
	for k, v := range attrs {
		wrongSchema[k] = v
	}
	wrongSchema[event.AttrSchema] = "herald.event.v1.RenderBatch"
	cases := map[string]struct {
		body  []byte
		attrs map[string]string
	}{
		"wrong schema":  {body, wrongSchema},
		"corrupt body":  {append([]byte("junk"), body...), attrs},
		"no job in it":  {nil, map[string]string{event.AttrSchema: "herald.event.v1.DispatchBatch"}},
		"unknown codec": {body, map[string]string{event.AttrSchema: "herald.event.v1.DispatchBatch", event.AttrEncoding: "lz4"}},
	}
	for name, c := range cases {
		var out eventv1.DispatchBatch
		if err := event.Decode(c.body, c.attrs, &out); !errors.Is(err, event.ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}
