package worker

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

func TestLinkWriterKeepsFramesWholeAndReportsWrites(t *testing.T) {
	var mu sync.Mutex
	var got bytes.Buffer
	writes := 0
	w := newLinkWriter(func(bufs [][]byte) error {
		mu.Lock()
		defer mu.Unlock()
		writes++
		for _, b := range bufs {
			got.Write(b)
		}
		return nil
	})
	const senders, frames = 8, 200
	var wg sync.WaitGroup
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for i := 0; i < frames; i++ {
				// A frame in two buffers: they must stay adjacent.
				if err := w.send(i%2 == 0, []byte{'<', byte(s)}, []byte{byte(s), '>'}); err != nil {
					t.Errorf("send: %v", err)
					return
				}
			}
		}(s)
	}
	wg.Wait()
	b := got.Bytes()
	if len(b) != senders*frames*4 {
		t.Fatalf("wrote %d bytes, want %d", len(b), senders*frames*4)
	}
	for i := 0; i < len(b); i += 4 {
		if b[i] != '<' || b[i+3] != '>' || b[i+1] != b[i+2] {
			t.Fatalf("frame at %d torn: % x", i, b[i:i+4])
		}
	}
	if writes > senders*frames {
		t.Fatalf("%d writes for %d frames", writes, senders*frames)
	}
}

func TestLinkWriterFailureReachesEverySender(t *testing.T) {
	boom := errors.New("boom")
	w := newLinkWriter(func([][]byte) error { return boom })
	if err := w.send(true, []byte("a")); !errors.Is(err, boom) {
		t.Fatalf("first send: %v", err)
	}
	if err := w.send(false, []byte("b")); !errors.Is(err, boom) {
		t.Fatalf("send after a failed write: %v", err)
	}
}
