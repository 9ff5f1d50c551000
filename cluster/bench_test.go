package cluster

import (
	"testing"

	"github.com/gdirty/gdirty/cluster/natstest"
)

func BenchmarkRemoteEcho(b *testing.B) {
	srv := natstest.Start(b)
	fake := newFake()
	fake.started = make(chan struct{}, b.N+100)
	startNode(b, srv.URL(), fake, []string{"e"}, 0)
	a := startNode(b, srv.URL(), nil, nil, 0)
	waitHosted(b, a.nc, "e")
	c := &client{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c.buf.Reset()
		if out := a.Call("e", 1, []byte("e1234"), c); out != "ok" {
			b.Fatal(out)
		}
	}
}
