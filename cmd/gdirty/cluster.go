//go:build !lean

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/arbiter/stash"
	"github.com/gdirty/gdirty/cluster"
	"github.com/gdirty/gdirty/worker"
)

// clusterBuilt: this build has cluster support (handoff.go).
const clusterBuilt = true

// clusterConfig is the resolved cluster configuration (cluster_off.go has
// an empty one for builds without cluster support).
type clusterConfig = cluster.Options

// clusterOptions resolves the cluster settings: flag or env > TOML > default.
func clusterOptions(c *cli.Context, t clusterSettings) (*clusterConfig, string, error) {
	str := func(flag, toml string) string {
		if c.IsSet(flag) || toml == "" {
			return c.String(flag)
		}
		return toml
	}
	dur := func(flag, toml string) (time.Duration, error) {
		if c.IsSet(flag) || toml == "" {
			return c.Duration(flag), nil
		}
		d, err := time.ParseDuration(toml)
		if err != nil {
			return 0, fmt.Errorf("%s = %q: %v", strings.ReplaceAll(flag, "-", "_"), toml, err)
		}
		return d, nil
	}
	o := &cluster.Options{
		URL:       str("cluster", t.Cluster),
		Name:      str("cluster-name", t.ClusterName),
		CredsFile: str("cluster-creds", t.ClusterCreds),
		User:      str("cluster-user", t.ClusterUser),
		TLSCA:     str("cluster-tls-ca", t.ClusterTLSCA),
		TLSCert:   str("cluster-tls-cert", t.ClusterTLSCert),
		TLSKey:    str("cluster-tls-key", t.ClusterTLSKey),
	}
	var err error
	if o.Token, err = secret(str("cluster-token-file", t.ClusterTokenFile), "GDIRTY_CLUSTER_TOKEN"); err != nil {
		return nil, "", &usageError{msg: "cluster token: " + err.Error()}
	}
	if o.Password, err = secret(str("cluster-password-file", t.ClusterPasswordFile), "GDIRTY_CLUSTER_PASSWORD"); err != nil {
		return nil, "", &usageError{msg: "cluster password: " + err.Error()}
	}
	if c.Command.Name == "status" {
		return o, "", o.Validate()
	}
	o.NodeName = str("cluster-node-name", t.ClusterNodeName)
	o.Listen = str("cluster-listen", t.ClusterListen)
	o.DataDir = str("cluster-data-dir", t.ClusterDataDir)
	o.Spill = c.Bool("spill") || (!c.IsSet("spill") && t.Spill != nil && *t.Spill)
	if o.Liveness, err = dur("cluster-liveness", t.ClusterLiveness); err != nil {
		return nil, "", &usageError{msg: err.Error()}
	}
	if o.ReconnectWait, err = dur("cluster-reconnect-wait", t.ClusterReconnectWait); err != nil {
		return nil, "", &usageError{msg: err.Error()}
	}
	stashMode := str("stash", t.Stash)
	if stashMode != "local" && stashMode != "cluster" {
		return nil, "", &usageError{msg: fmt.Sprintf("--stash must be local or cluster, got %q", stashMode)}
	}
	if !o.Enabled() {
		if stashMode == "cluster" || o.Spill {
			return nil, "", &usageError{msg: "--stash cluster and --spill need --cluster or --cluster-listen"}
		}
		return o, stashMode, nil
	}
	if err := o.Validate(); err != nil {
		return nil, "", &usageError{msg: err.Error()}
	}
	return o, stashMode, nil
}

// secret reads a secret from a file, else from the environment variable.
func secret(path, env string) (string, error) {
	if path != "" {
		return cluster.ReadSecret(path)
	}
	return os.Getenv(env), nil
}

// clusterNode is this gdirty's membership: its NATS connection, the
// embedded server if it runs one, and the node once it has joined.
type clusterNode struct {
	opts     *cluster.Options
	nc       *nats.Conn
	embedded *cluster.EmbeddedServer
	node     *cluster.Node
	log      logrus.FieldLogger
}

// connectCluster starts the embedded server (--cluster-listen) and
// connects; nil when the cluster is off.
func connectCluster(o *clusterConfig, log logrus.FieldLogger) (*clusterNode, error) {
	if !o.Enabled() {
		return nil, nil
	}
	cn := &clusterNode{opts: o, log: log}
	var extra []nats.Option
	if o.Listen != "" {
		s, err := cluster.StartEmbedded(o, log)
		if err != nil {
			return nil, err
		}
		cn.embedded = s
		if o.URL == "" {
			o.URL = s.URL
			extra = append(extra, s.InProcess())
		}
	}
	extra = append(extra,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // our own Close
			}
			log.Warnf("cluster: disconnected from NATS (%v); local apps keep working, remote calls fail until it is back", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Infof("cluster: reconnected to NATS at %s", nc.ConnectedUrlRedacted()) }))
	nc, err := cluster.Connect(o, "gdirty "+o.NodeName, extra...)
	if err != nil {
		cn.close()
		return nil, &usageError{msg: err.Error()}
	}
	cn.nc = nc
	log.Infof("cluster: joined %q on %s as %s", o.Name, nc.ConnectedUrlRedacted(), o.NodeName)
	return cn, nil
}

// join starts serving and calling through the cluster.
func (cn *clusterNode) join(srv *arbiter.Server, pool **worker.Pool, timeout time.Duration, reg metricsRegistry) error {
	var metrics *cluster.Metrics
	if reg != nil {
		metrics = cluster.NewMetrics(reg)
	}
	local := cluster.Local{
		Dial:    srv.DialLocal,
		Free:    srv.HasFree,
		Closing: srv.Closing,
		Timeout: timeout,
		Hosted: func() []string {
			return hostedApps(*pool)
		},
		Workers: func() int {
			if p := *pool; p != nil {
				return len(p.Workers())
			}
			return 0
		},
	}
	node, err := cluster.NewNode(cn.nc, *cn.opts, local, cn.log, metrics)
	if err != nil {
		return err
	}
	cn.node = node
	srv.SetRemote(node)
	if cn.opts.Spill {
		srv.SetSpiller(node)
	}
	return nil
}

// hostedApps lists the apps of the pool's booted workers.
func hostedApps(p *worker.Pool) []string {
	if p == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, w := range p.Workers() {
		if !w.Booted() {
			continue
		}
		for _, a := range w.Apps {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}

func (cn *clusterNode) close() {
	if cn == nil {
		return
	}
	if cn.node != nil {
		cn.node.Close()
	}
	if cn.nc != nil {
		// Drain lets answers in flight go out; without NATS there is
		// nothing to drain and waiting would only delay the exit.
		if cn.nc.IsConnected() {
			_ = cn.nc.Drain()
		}
		cn.nc.Close()
	}
	cn.embedded.Stop()
}

// clusterStatus prints every node of the cluster (gdirty status --cluster).
func clusterStatus(c *cli.Context) error {
	o, _, err := clusterOptions(c, clusterSettings{})
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	nc, err := cluster.Connect(o, "gdirty status")
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	nodes, err := cluster.Status(ctx, nc, o.Name, c.Duration("wait"))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		return enc.Encode(nodes)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cluster %q: %d nodes\n\nNODE\tPID\tWORKERS\tSERVING\tCALLING\tUPTIME\tAPPS\n", o.Name, len(nodes))
	for _, n := range nodes {
		apps := strings.Join(n.Apps, ", ")
		if apps == "" {
			apps = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0fs\t%s\n", n.Name, n.PID, n.Workers, n.Serving, n.Calling, n.Uptime, apps)
	}
	return tw.Flush()
}

// stashBackend is what the stash service and its metrics need.
type stashBackend interface {
	stash.Backend
	arbiter.StashStats
}

// newStash returns the in-memory stash, or with --stash cluster the
// JetStream one shared by every node.
func newStash(mode string, cn *clusterNode, maxBytes int64) (stashBackend, error) {
	if mode != "cluster" {
		return stash.NewMemory(maxBytes), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := stash.NewJetStream(ctx, cn.nc, cn.opts.Name, maxBytes)
	if err != nil {
		return nil, err
	}
	cn.log.Infof("cluster: stash in JetStream bucket %s", stash.BucketName(cn.opts.Name))
	return js, nil
}
