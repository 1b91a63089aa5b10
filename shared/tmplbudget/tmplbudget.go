// Package tmplbudget bounds one execution of an untrusted Go template: the
// steps it takes (template and loop bodies run), the bytes it writes and
// the wall time it runs.
//
// Output alone is not enough to bound: a loop that writes nothing, or
// template calls that double at every level, run for as long as they like
// without writing a byte, and a printf with a wide field or a print of many
// large values builds a string far past the output budget before anything
// reaches the writer. So an execution counts a step for every template
// body it runs (the one executed and every one called) and every loop
// iteration, reads the clock every ClockEvery steps, and the
// builtins that build strings (print, printf, println, html, js, urlquery)
// refuse to build one larger than the output budget.
//
// Runner applies a budget to text/template and html/template; an engine of
// its own (such as render's compiled templates) counts with a Meter, so
// both enforce the same budget the same way.
package tmplbudget

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Limits bound one execution. A zero field is no limit.
type Limits struct {
	// Steps is how many template and loop bodies the execution may run:
	// one for the template executed, one for every template call and one
	// for every loop iteration.
	Steps int
	// Bytes is how much output it may write; no builtin may build a
	// string longer than that either.
	Bytes int
	// Deadline is when it must have finished.
	Deadline time.Time
}

// ClockEvery is how many steps pass between two looks at the clock.
const ClockEvery = 64

// The budgets an execution can run out of; the error of such an execution
// wraps one of them.
var (
	ErrSteps = errors.New("step budget exceeded")
	ErrBytes = errors.New("output budget exceeded")
	ErrTime  = errors.New("time budget exceeded")
)

// Exceeded names the budget err ran out of: "steps", "bytes" or "time", or
// "" if err is not a budget error.
func Exceeded(err error) string {
	switch {
	case errors.Is(err, ErrSteps):
		return "steps"
	case errors.Is(err, ErrBytes):
		return "bytes"
	case errors.Is(err, ErrTime):
		return "time"
	}
	return ""
}

// Meter counts one execution against its Limits. Start it for every
// execution; it is not safe for concurrent use.
type Meter struct {
	maxSteps int
	maxBytes int
	deadline time.Time
	timed    bool
	steps    int
	next     int   // the step at which Step looks further than its counter
	err      error // the first budget the execution ran out of
}

// Start begins an execution within lim.
func (m *Meter) Start(lim Limits) {
	*m = Meter{maxSteps: math.MaxInt, maxBytes: math.MaxInt, deadline: lim.Deadline, timed: !lim.Deadline.IsZero()}
	if lim.Steps > 0 {
		m.maxSteps = lim.Steps
	}
	if lim.Bytes > 0 {
		m.maxBytes = lim.Bytes
	}
	m.schedule()
}

// halt makes the meter stop its execution at the first step, write or
// string-building builtin.
func (m *Meter) halt() {
	m.Start(Limits{})
	m.maxSteps, m.maxBytes = 0, -1
	m.schedule()
}

// schedule sets the next step that needs more than counting.
func (m *Meter) schedule() {
	m.next = math.MaxInt
	if m.maxSteps < math.MaxInt {
		m.next = m.maxSteps + 1
	}
	if m.timed {
		m.next = min(m.next, (m.steps/ClockEvery+1)*ClockEvery)
	}
}

// Step counts a step: a run of a template's body (the template executed,
// or one it calls) or of a loop's body. It fails once the steps are over
// the budget, or at a look at the clock past the deadline.
func (m *Meter) Step() error {
	m.steps++
	if m.steps < m.next {
		return nil
	}
	return m.check()
}

func (m *Meter) check() error {
	if m.steps > m.maxSteps {
		return m.fail(fmt.Errorf("%w (more than %d template and loop bodies run)", ErrSteps, m.maxSteps))
	}
	if m.timed && m.steps%ClockEvery == 0 && !time.Now().Before(m.deadline) {
		return m.fail(fmt.Errorf("%w (still running at the deadline, after %d steps)", ErrTime, m.steps))
	}
	m.schedule()
	return nil
}

// Size fails if n bytes, the output so far or a string a builtin would
// build, are more than the output budget.
func (m *Meter) Size(n int) error {
	if n <= m.maxBytes {
		return nil
	}
	return m.fail(fmt.Errorf("%w (more than %d bytes)", ErrBytes, m.maxBytes))
}

// MaxBytes is the output budget; math.MaxInt when there is none.
func (m *Meter) MaxBytes() int { return m.maxBytes }

// Err is the budget the execution ran out of, or nil.
func (m *Meter) Err() error { return m.err }

// fail records the first budget the execution ran out of and returns it:
// once out of budget, an execution stays out.
func (m *Meter) fail(err error) error {
	if m.err == nil {
		m.err = err
	}
	return m.err
}
