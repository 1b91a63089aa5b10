package provider

import (
	"context"
	"sync"
	"sync/atomic"
)

// SendEach is Send for an API that takes one message a request: it calls
// send for every message, at most concurrency at a time (at least one), and
// returns the results in the messages' order.
func SendEach(ctx context.Context, msgs []*Message, concurrency int, send func(context.Context, *Message) Result) []Result {
	out := make([]Result, len(msgs))
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= len(msgs) {
				return
			}
			out[i] = send(ctx, msgs[i])
		}
	}
	var wg sync.WaitGroup
	for range min(len(msgs), concurrency) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	return out
}
