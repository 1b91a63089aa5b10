package deliver

// ErrPending is the error Handle returns for a batch with recipients left
// to retry, for tests that tell it from a failure.
var ErrPending = errPending
