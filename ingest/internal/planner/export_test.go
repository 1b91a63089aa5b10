package planner

import "context"

// RedriveOnce runs one round of the stall re-driver, for tests.
func (p *Planner) RedriveOnce(ctx context.Context) error { return p.redriveOnce(ctx) }

// PlanNext leases one planning task and plans it, for benchmarks.
func (p *Planner) PlanNext(ctx context.Context) (bool, error) { return p.planNext(ctx, ctx) }

// ReleaseOnce runs one round of the releaser, for tests and benchmarks.
func (p *Planner) ReleaseOnce(ctx context.Context) (int, error) { return p.releaseOnce(ctx) }
