package worker

import (
	"testing"

	"github.com/gdirty/gdirty/compat"
)

func TestCallQueuesInOrderWithoutBlocking(t *testing.T) {
	c := newCall()
	for i := 0; i < 1000; i++ { // far more than any channel buffer
		c.push(Frame{Type: compat.MsgChunk, Payload: []byte{byte(i)}})
	}
	c.push(Frame{Type: compat.MsgEnd})
	for i := 0; i < 1000; i++ {
		f, ok, overflow := c.Next()
		if !ok || overflow || f.Payload[0] != byte(i) {
			t.Fatalf("frame %d: ok=%v overflow=%v payload=%v", i, ok, overflow, f.Payload)
		}
	}
	if f, ok, _ := c.Next(); !ok || !f.Final() {
		t.Fatalf("END not delivered last")
	}
	if _, ok, _ := c.Next(); ok {
		t.Fatalf("queue not empty")
	}
}

func TestCallOverflowDropsSlowCaller(t *testing.T) {
	old := MaxQueuedBytes
	MaxQueuedBytes = 100
	defer func() { MaxQueuedBytes = old }()
	c := newCall()
	c.push(Frame{Type: compat.MsgChunk, Payload: make([]byte, 500)}) // one frame always fits
	if _, _, overflow := c.Next(); overflow {
		t.Fatal("a single large frame must be accepted")
	}
	c.push(Frame{Type: compat.MsgChunk, Payload: make([]byte, 60)})
	c.push(Frame{Type: compat.MsgChunk, Payload: make([]byte, 60)}) // 120 > 100
	if _, ok, overflow := c.Next(); ok || !overflow {
		t.Fatalf("ok=%v overflow=%v, want overflow", ok, overflow)
	}
	c.push(Frame{Type: compat.MsgEnd})
	if _, ok, _ := c.Next(); ok {
		t.Fatal("frames accepted after overflow")
	}
}

func TestAbandonedCallDropsFrames(t *testing.T) {
	c := newCall()
	c.push(Frame{Type: compat.MsgChunk, Payload: []byte("x")})
	c.abandon()
	c.push(Frame{Type: compat.MsgEnd})
	if _, ok, _ := c.Next(); ok {
		t.Fatal("abandoned call still yields frames")
	}
}
