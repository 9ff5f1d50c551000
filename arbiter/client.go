package arbiter

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gdirty/gdirty/compat"
)

// Query sends one arbiter-level message (STATUS, MANAGE, STASH) to a
// running arbiter — gdirty or gunicorn's own — and returns its result.
// An ERROR answer is returned as *compat.DirtyError.
func Query(ctx context.Context, socketPath string, t compat.MsgType, payload []byte) (any, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", socketPath, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	}
	const id = 1
	if _, err := conn.Write(compat.AppendFrame(nil, t, id, payload)); err != nil {
		return nil, fmt.Errorf("send %s: %w", t, err)
	}
	h, body, err := compat.ReadFrame(conn, nil)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	v, err := compat.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	d2, _ := v.(*compat.Dict)
	switch h.Type {
	case compat.MsgResponse:
		result, _ := d2.Get("result")
		return result, nil
	case compat.MsgError:
		ev, _ := d2.Get("error")
		ed, _ := ev.(*compat.Dict)
		e := &compat.DirtyError{Type: "DirtyError"}
		if s, ok := dictString(ed, "error_type"); ok {
			e.Type = s
		}
		e.Message, _ = dictString(ed, "message")
		return nil, e
	default:
		return nil, fmt.Errorf("unexpected answer type %s", h.Type)
	}
}

func dictString(d *compat.Dict, key string) (string, bool) {
	v, ok := d.Get(key)
	s, isStr := v.(string)
	return s, ok && isStr
}
