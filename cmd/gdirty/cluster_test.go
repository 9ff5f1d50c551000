//go:build !lean

package main

import (
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/gdirty/gdirty/cluster"
)

// cluster_flags.go copies the cluster package's defaults so the lean build
// does not link it.
func TestClusterDefaultsMatch(t *testing.T) {
	if defaultClusterName != cluster.DefaultName || defaultClusterLiveness != cluster.DefaultLiveness {
		t.Fatalf("cluster_flags.go defaults %q, %v; cluster package %q, %v",
			defaultClusterName, defaultClusterLiveness, cluster.DefaultName, cluster.DefaultLiveness)
	}
}

// The cluster keys live in gdirty's TOML next to the others.
func TestClusterTOMLKeys(t *testing.T) {
	var o options
	md, err := toml.Decode(`
socket = "/tmp/x.sock"
cluster = "nats://10.0.0.5:4222"
cluster_name = "prod"
cluster_token_file = "/etc/gdirty/token"
cluster_liveness = "5s"
spill = true
stash = "cluster"
`, &o)
	if err != nil {
		t.Fatal(err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		t.Fatalf("undecoded keys: %v", un)
	}
	c := o.clusterSettings
	if c.Cluster != "nats://10.0.0.5:4222" || c.ClusterName != "prod" || c.ClusterTokenFile != "/etc/gdirty/token" ||
		c.ClusterLiveness != "5s" || c.Spill == nil || !*c.Spill || c.Stash != "cluster" || o.Socket != "/tmp/x.sock" {
		t.Fatalf("decoded %+v", o)
	}
}
