package arbiter

import "time"

// Call outcomes, the "outcome" label of gdirty_requests_total.
const (
	OutcomeOK        = "ok"         // RESPONSE, or a stream ended by END
	OutcomeAppError  = "app_error"  // the app raised (DirtyAppError)
	OutcomeError     = "error"      // any other error dict from the worker
	OutcomeTimeout   = "timeout"    // dirty_timeout hit (waiting or running)
	OutcomeNoWorkers = "no_workers" // no worker hosts the app, queue full
	OutcomeWorker    = "worker_died"
	OutcomeProtocol  = "protocol_error"
	OutcomeClient    = "client_gone" // the client stopped reading
)

// Recorder is told about calls and worker lifecycle events. The arbiter
// does not know where they go: the Prometheus recorder (package metrics)
// is linked only into the build that serves --metrics-bind, so a gdirty
// without metrics pays nothing for them.
type Recorder interface {
	// CallStarted counts a call in flight and returns its start time.
	CallStarted() time.Time
	// CallFinished records a call's outcome (one of Outcome*) and latency.
	CallFinished(app, action, outcome string, started time.Time)
	WorkerStarted()
	WorkerExited()
	// WorkerRetired counts a retirement; reason is one of worker.RetireReasons.
	WorkerRetired(reason string)
}

// noRecorder records nothing (no --metrics-bind).
type noRecorder struct{}

func (noRecorder) CallStarted() time.Time                         { return time.Time{} }
func (noRecorder) CallFinished(string, string, string, time.Time) {}
func (noRecorder) WorkerStarted()                                 {}
func (noRecorder) WorkerExited()                                  {}
func (noRecorder) WorkerRetired(string)                           {}

// StashStats reports the stash's size for metrics.
type StashStats interface {
	Stats() (tables, entries int)
	Usage() (used, max int64)
}
