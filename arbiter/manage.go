package arbiter

import (
	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// MANAGE operation codes (gunicorn.dirty.protocol).
const (
	manageAdd    = 1
	manageRemove = 2
)

// Manage answers MANAGE messages (add/remove workers) with the result
// shape of gunicorn's arbiter, so gunicorn's control tooling works. Unlike
// gunicorn, removal never retires the last worker of an app.
type Manage struct {
	Pool *worker.Pool
}

// Handle implements Service.
func (m Manage) Handle(payload []byte) ([]byte, *compat.DirtyError) {
	v, err := compat.Decode(payload)
	if err != nil {
		return nil, compat.ErrProtocol(err)
	}
	d, _ := v.(*compat.Dict)
	opV, _ := d.Get("op")
	op, _ := opV.(int64)
	count := int64(1)
	if c, ok := d.Get("count"); ok {
		switch n := c.(type) {
		case int64:
			count = n
		case float64:
			count = int64(n)
		case bool:
			if n {
				count = 1
			} else {
				count = 0
			}
		}
	}
	count = max(1, min(count, 1024))

	var result *compat.Dict
	switch op {
	case manageAdd:
		r := m.Pool.ScaleUp(int(count))
		result = compat.NewDict("success", true, "operation", "add", "requested", count, "spawned", int64(r.Changed))
		if r.Changed == 0 {
			result.Set("reason", "All apps have reached their worker limits")
		}
		result.Set("total_workers", int64(r.Total))
		result.Set("target_workers", int64(r.Target))
	case manageRemove:
		r := m.Pool.ScaleDown(int(count))
		result = compat.NewDict("success", true, "operation", "remove", "requested", count, "removed", int64(r.Changed),
			"total_workers", int64(r.Total), "target_workers", int64(r.Target))
	default:
		return nil, compat.ErrGeneric("Unknown manage operation: %s", compat.PyStr(opV))
	}
	out, err := compat.ResponsePayload(result)
	if err != nil {
		return nil, compat.ErrGeneric("%v", err)
	}
	return out, nil
}
