package sendgridout

import "time"

// SetNow replaces c's clock, which decides when a 429's pause ends.
func SetNow(c *Client, now func() time.Time) { c.now = now }
