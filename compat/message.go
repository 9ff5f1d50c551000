package compat

import (
	"encoding/hex"
	"fmt"
)

// DirtyError is an error as it travels on the wire:
// {"error_type": ..., "message": ..., "details": {...}}. The client rebuilds
// the Python exception class from Type, so names, messages and detail keys
// are API and mirror gunicorn/dirty/errors.py.
type DirtyError struct {
	Type    string
	Message string
	Details *Dict
}

func (e *DirtyError) Error() string { return e.Type + ": " + e.Message }

// ToDict returns the error dict.
func (e *DirtyError) ToDict() *Dict {
	details := e.Details
	if details == nil {
		details = &Dict{}
	}
	return NewDict("error_type", e.Type, "message", e.Message, "details", details)
}

// Payload returns the ERROR message payload {"error": {...}}.
func (e *DirtyError) Payload() []byte {
	b, err := Encode(NewDict("error", e.ToDict()))
	if err != nil {
		// Only reachable with a non-UTF-8 message; keep the error type.
		b, _ = Encode(NewDict("error", NewDict("error_type", e.Type, "message", "invalid error message", "details", &Dict{})))
	}
	return b
}

// Frame returns the complete ERROR frame for request id.
func (e *DirtyError) Frame(id uint64) []byte {
	return AppendFrame(nil, MsgError, id, e.Payload())
}

// ErrNoWorkers is gunicorn's answer when the pool has no worker at all:
// a plain DirtyError.
func ErrNoWorkers() *DirtyError {
	return &DirtyError{Type: "DirtyError", Message: "No dirty workers available"}
}

// ErrNoWorkersForApp is DirtyNoWorkersAvailableError(app_path).
func ErrNoWorkersForApp(appPath string) *DirtyError {
	return &DirtyError{
		Type:    "DirtyNoWorkersAvailableError",
		Message: "No workers available for app: " + appPath,
		Details: NewDict("app_path", appPath),
	}
}

// ErrNoWorkersForAppValue is DirtyNoWorkersAvailableError for an app_path
// that is not a str (the details keep the value as sent).
func ErrNoWorkersForAppValue(appPath any) *DirtyError {
	return &DirtyError{
		Type:    "DirtyNoWorkersAvailableError",
		Message: "No workers available for app: " + PyStr(appPath),
		Details: NewDict("app_path", appPath),
	}
}

// ErrTimeout is DirtyTimeoutError(message, timeout); gunicorn omits the
// detail when the timeout is 0.
func ErrTimeout(message string, timeoutSeconds int64) *DirtyError {
	e := &DirtyError{Type: "DirtyTimeoutError", Message: message}
	if timeoutSeconds != 0 {
		e.Details = NewDict("timeout", timeoutSeconds)
	}
	return e
}

// ErrWorker is DirtyWorkerError(message, worker_id=pid).
func ErrWorker(message string, workerPID int) *DirtyError {
	return &DirtyError{Type: "DirtyWorkerError", Message: message, Details: NewDict("worker_id", int64(workerPID))}
}

// ErrGeneric is a plain DirtyError with a message.
func ErrGeneric(format string, args ...any) *DirtyError {
	return &DirtyError{Type: "DirtyError", Message: fmt.Sprintf(format, args...)}
}

// ErrProtocol converts a ProtocolError into gunicorn's DirtyProtocolError
// dict (raw_data is the hex of the offending bytes, as gunicorn does).
func ErrProtocol(err error) *DirtyError {
	pe, ok := err.(*ProtocolError)
	if !ok {
		return &DirtyError{Type: "DirtyProtocolError", Message: err.Error()}
	}
	e := &DirtyError{Type: "DirtyProtocolError", Message: pe.Message}
	if pe.Raw != nil {
		e.Details = NewDict("raw_data", hex.EncodeToString(pe.Raw))
	}
	return e
}

// ResponsePayload returns the RESPONSE payload {"result": result}.
func ResponsePayload(result any) ([]byte, error) {
	return Encode(NewDict("result", result))
}

// ErrorType returns the error_type of an ERROR payload without decoding
// the rest ("" when it has none). For classification only.
func ErrorType(payload []byte) string {
	v, err := Decode(payload)
	if err != nil {
		return ""
	}
	d, _ := v.(*Dict)
	ev, _ := d.Get("error")
	ed, _ := ev.(*Dict)
	t, _ := ed.Get("error_type")
	s, _ := t.(string)
	return s
}
