package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gunicorn.conf.py's gdirty_* cluster names fill what the TOML left unset.
func TestClusterSettingsFromConf(t *testing.T) {
	raw := map[string]json.RawMessage{
		"gdirty_cluster":          json.RawMessage(`"nats://10.0.0.5:4222"`),
		"gdirty_cluster_name":     json.RawMessage(`"conf"`),
		"gdirty_cluster_liveness": json.RawMessage(`2.5`),
		"gdirty_spill":            json.RawMessage(`true`),
		"gdirty_stash":            json.RawMessage(`"cluster"`),
	}
	conf, warnings, err := confValues(raw, "gunicorn.conf.py")
	if err != nil || len(warnings) > 0 {
		t.Fatalf("confValues: %v, warnings %q", err, warnings)
	}
	toml := clusterSettings{ClusterName: "toml"}
	got, err := toml.withConf(conf, "gunicorn.conf.py")
	if err != nil {
		t.Fatal(err)
	}
	if got.Cluster != "nats://10.0.0.5:4222" || got.ClusterName != "toml" || got.ClusterLiveness != "2.5s" ||
		got.Spill == nil || !*got.Spill || got.Stash != "cluster" || !got.any() {
		t.Fatalf("merged %+v", got)
	}
	off := false
	got, err = clusterSettings{Spill: &off}.withConf(conf, "gunicorn.conf.py")
	if err != nil || *got.Spill {
		t.Fatalf("the TOML's spill = false must win: %+v, %v", got, err)
	}
	if (clusterSettings{}).any() {
		t.Fatal("empty settings reported as given")
	}
}

func TestClusterSettingsFromConfRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		key  string
		v    any
		want string
	}{
		{"cluster", int64(4222), "gdirty_cluster = 4222: must be a string"},
		{"cluster_liveness", "soon", "gdirty_cluster_liveness = \"soon\""},
		{"spill", "maybe", "gdirty_spill = \"maybe\": must be true or false"},
	} {
		_, err := clusterSettings{}.withConf(map[string]any{c.key: c.v}, "gunicorn.conf.py")
		if _, usage := err.(*usageError); !usage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s = %v: %v, want a usage error with %q", c.key, c.v, err, c.want)
		}
	}
}

// gdirty-cluster is looked up on PATH when it is not next to this binary
// (the test binary, here), and its absence is named.
func TestFindClusterBinary(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if _, err := findClusterBinary(); err == nil || !strings.Contains(err.Error(), "gdirty-cluster is neither next to") {
		t.Fatalf("no gdirty-cluster anywhere: %v", err)
	}
	bin := filepath.Join(dir, clusterBinary)
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := findClusterBinary()
	if err != nil || got != bin {
		t.Fatalf("found %q, %v; want %q", got, err, bin)
	}
}
