package provider

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Every message gets its own result in order, and no more than the
// concurrency asked for are in flight at once.
func TestSendEachKeepsOrderAndConcurrency(t *testing.T) {
	msgs := make([]*Message, 50)
	for i := range msgs {
		msgs[i] = &Message{Key: strconv.Itoa(i)}
	}
	for _, concurrency := range []int{0, 1, 4} {
		var inFlight, most atomic.Int64
		res := SendEach(context.Background(), msgs, concurrency, func(_ context.Context, m *Message) Result {
			n := inFlight.Add(1)
			for { // record the highest count seen
				old := most.Load()
				if n <= old || most.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(time.Millisecond)
			inFlight.Add(-1)
			return Result{Outcome: Sent, Reason: m.Key}
		})
		for i, r := range res {
			if r.Reason != msgs[i].Key {
				t.Fatalf("concurrency %d: result %d is for message %q", concurrency, i, r.Reason)
			}
		}
		if limit := max(concurrency, 1); most.Load() > int64(limit) {
			t.Errorf("concurrency %d: %d sends in flight at once", concurrency, most.Load())
		}
	}
}
