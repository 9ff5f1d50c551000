package worker

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gdirty/gdirty/compat"
)

func begin(t compat.MsgType, total uint32, data string) []byte {
	b := make([]byte, beginPrefix, beginPrefix+len(data))
	b[0] = byte(t)
	binary.BigEndian.PutUint32(b[1:], total)
	return append(b, data...)
}

type linkMsg struct {
	t       compat.MsgType
	payload []byte
}

func TestPartialAssemblesFrames(t *testing.T) {
	type want struct {
		typ        compat.MsgType
		payload    string
		total      uint32
		cont, more bool
		final      bool
	}
	cases := []struct {
		name string
		msgs []linkMsg
		want []want
		// errAt is the index of the message that must be refused (-1: none).
		errAt int
	}{
		{"whole response", []linkMsg{{compat.MsgResponse, []byte("abc")}},
			[]want{{compat.MsgResponse, "abc", 3, false, false, true}}, -1},
		{"whole chunk then end", []linkMsg{{compat.MsgChunk, []byte("x")}, {compat.MsgEnd, nil}},
			[]want{{compat.MsgChunk, "x", 1, false, false, false}, {compat.MsgEnd, "", 0, false, false, true}}, -1},
		{"response in three pieces", []linkMsg{
			{msgFrameBegin, begin(compat.MsgResponse, 6, "ab")},
			{msgFrameMore, []byte("cd")},
			{msgFrameMore, []byte("ef")},
		}, []want{
			{compat.MsgResponse, "ab", 6, false, true, false},
			{compat.MsgResponse, "cd", 0, true, true, false},
			{compat.MsgResponse, "ef", 0, true, false, true},
		}, -1},
		{"begin holding the whole frame", []linkMsg{{msgFrameBegin, begin(compat.MsgError, 2, "ok")}},
			[]want{{compat.MsgError, "ok", 2, false, false, true}}, -1},
		{"fragmented chunks then end", []linkMsg{
			{msgFrameBegin, begin(compat.MsgChunk, 2, "a")},
			{msgFrameMore, []byte("b")},
			{compat.MsgEnd, nil},
		}, []want{
			{compat.MsgChunk, "a", 2, false, true, false},
			{compat.MsgChunk, "b", 0, true, false, false},
			{compat.MsgEnd, "", 0, false, false, true},
		}, -1},
		{"more without begin", []linkMsg{{msgFrameMore, []byte("x")}}, nil, 0},
		{"piece overruns its frame", []linkMsg{
			{msgFrameBegin, begin(compat.MsgResponse, 3, "ab")},
			{msgFrameMore, []byte("cd")},
		}, []want{{compat.MsgResponse, "ab", 3, false, true, false}}, 1},
		{"whole frame inside a fragmented one", []linkMsg{
			{msgFrameBegin, begin(compat.MsgResponse, 3, "ab")},
			{compat.MsgEnd, nil},
		}, []want{{compat.MsgResponse, "ab", 3, false, true, false}}, 1},
		{"begin inside a fragmented one", []linkMsg{
			{msgFrameBegin, begin(compat.MsgResponse, 3, "ab")},
			{msgFrameBegin, begin(compat.MsgResponse, 1, "c")},
		}, []want{{compat.MsgResponse, "ab", 3, false, true, false}}, 1},
		{"short begin", []linkMsg{{msgFrameBegin, []byte{byte(compat.MsgResponse), 0, 0}}}, nil, 0},
		{"begin of END type", []linkMsg{{msgFrameBegin, begin(compat.MsgEnd, 0, "")}}, nil, 0},
		{"begin of a request type", []linkMsg{{msgFrameBegin, begin(compat.MsgRequest, 1, "a")}}, nil, 0},
		{"begin over the frame limit", []linkMsg{{msgFrameBegin, begin(compat.MsgResponse, compat.MaxMessageSize+1, "a")}}, nil, 0},
		{"first piece longer than total", []linkMsg{{msgFrameBegin, begin(compat.MsgResponse, 1, "ab")}}, nil, 0},
		{"link-only type", []linkMsg{{msgHeartbeat, nil}}, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p partial
			got := 0
			for i, m := range tc.msgs {
				f, err := p.next(m.t, m.payload)
				if i == tc.errAt {
					if err == nil {
						t.Fatalf("message %d accepted, want an error", i)
					}
					return
				}
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				w := tc.want[got]
				got++
				if f.Type != w.typ || string(f.Payload) != w.payload || f.Cont != w.cont || f.More != w.more || f.Final() != w.final {
					t.Fatalf("message %d: got %+v (final %v), want %+v", i, f, f.Final(), w)
				}
				if !f.Cont && f.Total != w.total {
					t.Fatalf("message %d: total %d, want %d", i, f.Total, w.total)
				}
			}
			if tc.errAt >= 0 {
				t.Fatalf("no error, want one at message %d", tc.errAt)
			}
		})
	}
}

func TestPartialAbortAllowsANewFrame(t *testing.T) {
	var p partial
	if _, err := p.next(msgFrameBegin, begin(compat.MsgResponse, 10, "ab")); err != nil {
		t.Fatal(err)
	}
	p.abort()
	f, err := p.next(compat.MsgEnd, nil)
	if err != nil || !f.Final() {
		t.Fatalf("after abort: %+v %v", f, err)
	}
}

// FuzzPartial feeds arbitrary link message sequences to the assembler: it
// must never panic, never hand out more payload than a frame announced,
// and every frame it completes must add up to its total.
func FuzzPartial(f *testing.F) {
	f.Add([]byte{0x43, 7, 2, 0, 0, 0, 3, 'a', 0x44, 2, 'b', 'c'})
	f.Add([]byte{0x02, 1, 'x', 0x05, 0})
	f.Add([]byte{0x44, 1, 'x'})
	f.Fuzz(func(t *testing.T, data []byte) {
		var p partial
		var want, got uint64
		inFrame := false
		for len(data) >= 2 {
			typ, n := compat.MsgType(data[0]), int(data[1])
			data = data[2:]
			if n > len(data) {
				n = len(data)
			}
			msg := data[:n]
			data = data[n:]
			fr, err := p.next(typ, msg)
			if err != nil {
				continue
			}
			if !bytes.Equal(fr.Payload, msg[len(msg)-len(fr.Payload):]) {
				t.Fatalf("payload not a suffix of the message")
			}
			if !fr.Cont {
				if inFrame {
					t.Fatalf("new frame started inside another")
				}
				want, got = uint64(fr.Total), 0
			} else if !inFrame {
				t.Fatalf("continuation outside a frame")
			}
			got += uint64(len(fr.Payload))
			if got > want {
				t.Fatalf("frame overran: %d > %d", got, want)
			}
			inFrame = fr.More
			if !fr.More && got != want {
				t.Fatalf("frame ended at %d of %d bytes", got, want)
			}
		}
	})
}
