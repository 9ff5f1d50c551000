//go:build !lean

package stash

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/gdirty/gdirty/cluster/natstest"
	"github.com/gdirty/gdirty/compat"
)

// The service tests, run against the cluster backend on a real
// in-process nats-server with JetStream: same answers, byte for byte.

func jsConn(t testing.TB, srv *natstest.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var bucketSeq atomic.Int64

// jsBackends returns a constructor of fresh JetStream stashes (one bucket
// each) on one server.
func jsBackends(t *testing.T, maxBytes int64) (func() *JetStream, *natstest.Server) {
	srv := natstest.Start(t)
	nc := jsConn(t, srv)
	return func() *JetStream {
		js, err := NewJetStream(context.Background(), nc, fmt.Sprintf("t%d", bucketSeq.Add(1)), maxBytes)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}, srv
}

func jsSvc(t *testing.T) func() *Service {
	mk, _ := jsBackends(t, 0)
	return func() *Service { return NewService(mk()) }
}

func TestJetStreamGunicornSessionGolden(t *testing.T) { replayGolden(t, jsSvc(t)()) }
func TestJetStreamOperations(t *testing.T)            { testOperations(t, jsSvc(t)) }
func TestJetStreamOrdering(t *testing.T)              { testOrdering(t, jsSvc(t)) }
func TestJetStreamKeyIdentity(t *testing.T)           { testKeyIdentity(t, jsSvc(t)) }
func TestJetStreamByteIdentical(t *testing.T)         { testByteIdentical(t, jsSvc(t)) }
func TestJetStreamBadPayloads(t *testing.T)           { testBadPayloads(t, jsSvc(t)) }

func TestJetStreamDeclaredTables(t *testing.T) {
	mk, _ := jsBackends(t, 0)
	b := mk()
	if err := EnsureTables(b, "sessions", "cache", "sessions"); err != nil {
		t.Fatal(err)
	}
	s := NewService(b)
	eq(t, ok(t, s, "op", OpTables), []any{"sessions", "cache"})
	eq(t, ok(t, s, "op", OpInfo, "table", "cache"), compat.NewDict("size", int64(0), "table", "cache"))
}

// Two nodes (two connections) see one store, and it survives a restart
// of the NATS server (JetStream file storage) and of the nodes.
func TestJetStreamSharedAndDurable(t *testing.T) {
	srv := natstest.Start(t)
	open := func() *Service {
		js, err := NewJetStream(context.Background(), jsConn(t, srv), "shared", 0)
		if err != nil {
			t.Fatal(err)
		}
		return NewService(js)
	}
	a, b := open(), open()
	ok(t, a, "op", OpPut, "table", "t", "key", "k1", "value", []byte("v\x00\xff"))
	ok(t, b, "op", OpPut, "table", "t", "key", int64(2), "value", 1.5)
	ok(t, a, "op", OpPut, "table", "t", "key", 2.0, "value", "replaced")
	eq(t, ok(t, b, "op", OpGet, "table", "t", "key", "k1"), []byte("v\x00\xff"))
	eq(t, ok(t, a, "op", OpKeys, "table", "t"), []any{"k1", int64(2)})
	srv.Restart()
	c := open()
	eq(t, ok(t, c, "op", OpGet, "table", "t", "key", 2.0), "replaced")
	eq(t, ok(t, c, "op", OpKeys, "table", "t"), []any{"k1", int64(2)})
}

// Concurrent puts of one key from several nodes leave one entry, in its
// first position; concurrent new keys all land.
func TestJetStreamConcurrentNodes(t *testing.T) {
	srv := natstest.Start(t)
	var svcs []*Service
	for i := 0; i < 3; i++ {
		js, err := NewJetStream(context.Background(), jsConn(t, srv), "conc", 0)
		if err != nil {
			t.Fatal(err)
		}
		svcs = append(svcs, NewService(js))
	}
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if _, derr := s.Handle(req(t, "op", OpPut, "table", "t", "key", "same", "value", int64(j))); derr != nil {
					t.Errorf("put: %v", derr)
				}
				if _, derr := s.Handle(req(t, "op", OpPut, "table", "t", "key", fmt.Sprintf("n%d-%d", i, j), "value", nil)); derr != nil {
					t.Errorf("put: %v", derr)
				}
			}
		}()
	}
	wg.Wait()
	eq(t, ok(t, svcs[0], "op", OpInfo, "table", "t"), compat.NewDict("size", int64(61), "table", "t"))
}

// The memory bound is the bucket's byte limit: a put past it fails with
// StashError and changes nothing.
func TestJetStreamBound(t *testing.T) {
	mk, _ := jsBackends(t, 64<<10)
	s := NewService(mk())
	big := make([]byte, 20<<10)
	var derr *compat.DirtyError
	for i := 0; i < 10 && derr == nil; i++ {
		_, derr = s.Handle(req(t, "op", OpPut, "table", "t", "key", int64(i), "value", big))
	}
	if derr == nil || derr.Type != TypeStashError {
		t.Fatalf("want StashError past the bound, got %v", derr)
	}
	n := ok(t, s, "op", OpInfo, "table", "t").(*compat.Dict)
	size, _ := n.Get("size")
	if size.(int64) < 1 || size.(int64) > 3 {
		t.Fatalf("size %v after the bound", size)
	}
}

func TestJetStreamValueTooLarge(t *testing.T) {
	mk, _ := jsBackends(t, 0)
	s := NewService(mk())
	fails(t, s, "DirtyError", "", "op", OpPut, "table", "t", "key", "k", "value", make([]byte, 2<<20))
	fails(t, s, TypeKeyNotFound, "Key not found: k", "op", OpGet, "table", "t", "key", "k")
}

// Records come from a bucket every node writes: malformed ones are errors,
// never panics, and what decodes re-encodes to the same bytes.
func FuzzDecodeRecords(f *testing.F) {
	f.Add(entryValue(7, "\x11\x00\x00\x00\x01k", "\x00"), uint64(3))
	f.Add(tableValue(0, 9, "\x11\x00\x00\x00\x01t"), uint64(1))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, uint64(1))
	f.Fuzz(func(t *testing.T, v []byte, rev uint64) {
		if e, err := decodeEntryValue(v, rev); err == nil {
			order := binary.BigEndian.Uint64(v)
			if got := entryValue(order, e.key, e.value); !bytes.Equal(got, v) {
				t.Fatalf("entry %x re-encodes to %x", v, got)
			}
		}
		if r, err := decodeTableValue("t.x", v, rev); err == nil {
			if got := tableValue(binary.BigEndian.Uint64(v), r.gen, r.name); !bytes.Equal(got, v) {
				t.Fatalf("table %x re-encodes to %x", v, got)
			}
		}
	})
}
