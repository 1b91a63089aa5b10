package planner

import "context"

// RedriveOnce runs one round of the stall re-driver, for tests.
func (p *Planner) RedriveOnce(ctx context.Context) error { return p.redriveOnce(ctx) }
