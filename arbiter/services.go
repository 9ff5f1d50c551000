package arbiter

import "github.com/gdirty/gdirty/compat"

// Service answers one kind of message the arbiter handles itself (STASH,
// MANAGE) instead of forwarding it to a worker. Handle receives the raw
// payload and returns either the RESPONSE payload ({"result": ...}) or the
// error to send; it must be safe for concurrent use.
type Service interface {
	Handle(payload []byte) ([]byte, *compat.DirtyError)
}
