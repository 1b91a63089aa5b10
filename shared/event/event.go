// Package event is Herald's wire contract on Pub/Sub: how a batch message is
// encoded, compressed and labelled with attributes. The message types
// themselves are generated from v1/event.proto into package eventv1.
package event

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	eventv1 "herald/shared/event/v1"
)

// Attribute keys set on every Herald message. They let a subscriber route,
// filter and trace a batch without decoding its body.
const (
	AttrSchema      = "schema"           // fully qualified proto message name
	AttrEncoding    = "content_encoding" // "identity" or "zstd"
	AttrTenant      = "tenant_id"
	AttrJob         = "job_id"
	AttrSeq         = "batch_seq"
	AttrSubmittedAt = "submitted_at" // RFC 3339, UTC
	AttrDeadline    = "deadline"     // RFC 3339, UTC
	AttrTraceparent = "traceparent"  // W3C trace context, when the job has one
)

// Encodings a body can travel in.
const (
	Identity = "identity"
	Zstd     = "zstd"
)

// ErrMalformed marks a message that can never be processed: a wrong schema, a
// body that does not decode. Subscribers send such messages to dead letters
// instead of retrying them.
var ErrMalformed = errors.New("malformed message")

// Batch is one of the batch messages of the contract.
type Batch interface {
	proto.Message
	GetJob() *eventv1.Job
}

// Encode serializes b for Pub/Sub, compressing the body when encoding is Zstd,
// and returns the body with the attributes that describe it.
func Encode(b Batch, encoding, traceparent string) ([]byte, map[string]string, error) {
	body, err := proto.Marshal(b)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal %s: %w", b.ProtoReflect().Descriptor().FullName(), err)
	}
	switch encoding {
	case Identity:
	case Zstd:
		body = encoder().EncodeAll(body, make([]byte, 0, len(body)/4))
	default:
		return nil, nil, fmt.Errorf("unknown encoding %q", encoding)
	}
	job := b.GetJob()
	attrs := map[string]string{
		AttrSchema:      string(b.ProtoReflect().Descriptor().FullName()),
		AttrEncoding:    encoding,
		AttrTenant:      job.GetTenantId(),
		AttrJob:         job.GetJobId(),
		AttrSeq:         strconv.FormatInt(job.GetSeq(), 10),
		AttrSubmittedAt: job.GetSubmittedAt().AsTime().UTC().Format(time.RFC3339Nano),
		AttrDeadline:    job.GetDeadline().AsTime().UTC().Format(time.RFC3339Nano),
	}
	if traceparent != "" {
		attrs[AttrTraceparent] = traceparent
	}
	return body, attrs, nil
}

// Decode fills b from a message body and its attributes. Every failure wraps
// ErrMalformed: a message that does not decode now never will.
func Decode(body []byte, attrs map[string]string, b Batch) error {
	want := string(b.ProtoReflect().Descriptor().FullName())
	if got := attrs[AttrSchema]; got != want {
		return fmt.Errorf("%w: schema %q, want %q", ErrMalformed, got, want)
	}
	switch enc := attrs[AttrEncoding]; enc {
	case Identity, "":
	case Zstd:
		var err error
		body, err = decoder().DecodeAll(body, nil)
		if err != nil {
			return fmt.Errorf("%w: decompress: %v", ErrMalformed, err)
		}
	default:
		return fmt.Errorf("%w: unknown encoding %q", ErrMalformed, enc)
	}
	if err := proto.Unmarshal(body, b); err != nil {
		return fmt.Errorf("%w: unmarshal %s: %v", ErrMalformed, want, err)
	}
	if b.GetJob().GetJobId() == "" || b.GetJob().GetTenantId() == "" {
		return fmt.Errorf("%w: %s without tenant or job", ErrMalformed, want)
	}
	return nil
}

// The zstd coders are safe for concurrent EncodeAll/DecodeAll calls and costly
// to build, so one of each serves the process.
var (
	encOnce sync.Once
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
)

func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		// SpeedDefault compresses a batch of similar emails about 30:1; the
		// faster levels lose much of that for little CPU.
		enc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	})
	return enc
}

func decoder() *zstd.Decoder {
	decOnce.Do(func() {
		// Batches are capped well under Pub/Sub's 10 MB, so a 64 MB window
		// bounds what a hostile message can make us allocate.
		dec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
	})
	return dec
}
