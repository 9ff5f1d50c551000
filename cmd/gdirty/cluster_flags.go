package main

// The cluster's flags and settings, known to both builds: the lean gdirty
// (-tags lean) must recognise them to hand over to gdirty-cluster
// (cluster_off.go); gdirty-cluster uses them (cluster.go).

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

// The cluster package's defaults, as literals so the lean build does not
// link the cluster package (and the NATS client) for two constants;
// TestClusterDefaultsMatch keeps them equal.
const (
	defaultClusterName     = "gdirty"
	defaultClusterLiveness = 3 * time.Second
)

// clusterConnFlags are the flags that say how to reach the cluster (shared
// by the arbiter and `gdirty status --cluster`). Secrets are read from
// files or the environment only, never from the command line.
func clusterConnFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cluster", EnvVars: []string{"GDIRTY_CLUSTER"}, Usage: "join the cluster on this NATS server (nats://host:4222, comma-separated for several)"},
		&cli.StringFlag{Name: "cluster-name", EnvVars: []string{"GDIRTY_CLUSTER_NAME"}, Value: defaultClusterName, Usage: "cluster name: nodes of one cluster share apps and the stash"},
		&cli.StringFlag{Name: "cluster-creds", EnvVars: []string{"GDIRTY_CLUSTER_CREDS"}, Usage: "NATS credentials file (JWT + nkey)"},
		&cli.StringFlag{Name: "cluster-token-file", EnvVars: []string{"GDIRTY_CLUSTER_TOKEN_FILE"}, Usage: "file holding the NATS token (or set GDIRTY_CLUSTER_TOKEN)"},
		&cli.StringFlag{Name: "cluster-user", EnvVars: []string{"GDIRTY_CLUSTER_USER"}, Usage: "NATS user (password from --cluster-password-file or GDIRTY_CLUSTER_PASSWORD)"},
		&cli.StringFlag{Name: "cluster-password-file", EnvVars: []string{"GDIRTY_CLUSTER_PASSWORD_FILE"}, Usage: "file holding the NATS password"},
		&cli.StringFlag{Name: "cluster-tls-ca", EnvVars: []string{"GDIRTY_CLUSTER_TLS_CA"}, Usage: "CA certificate (PEM) to verify the NATS server"},
		&cli.StringFlag{Name: "cluster-tls-cert", EnvVars: []string{"GDIRTY_CLUSTER_TLS_CERT"}, Usage: "client certificate (PEM) for mutual TLS"},
		&cli.StringFlag{Name: "cluster-tls-key", EnvVars: []string{"GDIRTY_CLUSTER_TLS_KEY"}, Usage: "client key (PEM) for mutual TLS"},
	}
}

func clusterFlags() []cli.Flag {
	return append(clusterConnFlags(),
		&cli.StringFlag{Name: "cluster-node-name", EnvVars: []string{"GDIRTY_CLUSTER_NODE_NAME"}, Usage: "this node's name in status (default: hostname:pid)"},
		&cli.StringFlag{Name: "cluster-listen", EnvVars: []string{"GDIRTY_CLUSTER_LISTEN"}, Usage: "run the real nats-server (with JetStream) on HOST:PORT inside this gdirty; others join with --cluster nats://HOST:PORT"},
		&cli.StringFlag{Name: "cluster-data-dir", EnvVars: []string{"GDIRTY_CLUSTER_DATA_DIR"}, Usage: "JetStream directory of the --cluster-listen server (default: <tmp>/gdirty-nats-<name>-<port>)"},
		&cli.DurationFlag{Name: "cluster-liveness", EnvVars: []string{"GDIRTY_CLUSTER_LIVENESS"}, Value: defaultClusterLiveness, Usage: "a remote call whose node shows no sign of life for this long fails with DirtyWorkerError"},
		&cli.DurationFlag{Name: "cluster-reconnect-wait", EnvVars: []string{"GDIRTY_CLUSTER_RECONNECT_WAIT"}, Value: time.Second, Usage: "pause between reconnects to NATS (reconnects never stop)"},
		&cli.BoolFlag{Name: "spill", EnvVars: []string{"GDIRTY_SPILL"}, Usage: "send a call to another node when every local worker for its app is busy"},
		&cli.StringFlag{Name: "stash", EnvVars: []string{"GDIRTY_STASH"}, Value: "local", Usage: "local (in gdirty's memory) or cluster (one JetStream key-value store for every node)"},
	)
}

// clusterSettings are the cluster keys of gdirty's TOML (flags win), then
// gunicorn.conf.py's gdirty_* names (withConf). Spill is nil when unset.
type clusterSettings struct {
	Cluster              string `toml:"cluster"`
	ClusterName          string `toml:"cluster_name"`
	ClusterCreds         string `toml:"cluster_creds"`
	ClusterTokenFile     string `toml:"cluster_token_file"`
	ClusterUser          string `toml:"cluster_user"`
	ClusterPasswordFile  string `toml:"cluster_password_file"`
	ClusterTLSCA         string `toml:"cluster_tls_ca"`
	ClusterTLSCert       string `toml:"cluster_tls_cert"`
	ClusterTLSKey        string `toml:"cluster_tls_key"`
	ClusterNodeName      string `toml:"cluster_node_name"`
	ClusterListen        string `toml:"cluster_listen"`
	ClusterDataDir       string `toml:"cluster_data_dir"`
	ClusterLiveness      string `toml:"cluster_liveness"`
	ClusterReconnectWait string `toml:"cluster_reconnect_wait"`
	Spill                *bool  `toml:"spill"`
	Stash                string `toml:"stash"`
}

// strings are the settings' string fields by key (shared by the TOML and
// gunicorn.conf.py's gdirty_KEY names).
func (t *clusterSettings) strings() map[string]*string {
	return map[string]*string{
		"cluster": &t.Cluster, "cluster_name": &t.ClusterName, "cluster_creds": &t.ClusterCreds,
		"cluster_token_file": &t.ClusterTokenFile, "cluster_user": &t.ClusterUser,
		"cluster_password_file": &t.ClusterPasswordFile, "cluster_tls_ca": &t.ClusterTLSCA,
		"cluster_tls_cert": &t.ClusterTLSCert, "cluster_tls_key": &t.ClusterTLSKey,
		"cluster_node_name": &t.ClusterNodeName, "cluster_listen": &t.ClusterListen,
		"cluster_data_dir": &t.ClusterDataDir,
		"stash":            &t.Stash,
	}
}

// durations are the fields holding a duration: a Go duration string in the
// TOML; in gunicorn.conf.py also a number of seconds, as gunicorn's timeouts.
func (t *clusterSettings) durations() map[string]*string {
	return map[string]*string{"cluster_liveness": &t.ClusterLiveness, "cluster_reconnect_wait": &t.ClusterReconnectWait}
}

// clusterKeys are every cluster setting's key (gdirty_KEY in gunicorn.conf.py).
func clusterKeys() []string {
	var t clusterSettings
	keys := []string{"spill"}
	for k := range t.strings() {
		keys = append(keys, k)
	}
	for k := range t.durations() {
		keys = append(keys, k)
	}
	return keys
}

// any reports whether any cluster setting is given.
func (t clusterSettings) any() bool {
	if t.Spill != nil {
		return true
	}
	for _, p := range t.strings() {
		if *p != "" {
			return true
		}
	}
	for _, p := range t.durations() {
		if *p != "" {
			return true
		}
	}
	return false
}

// withConf fills the settings the TOML left unset from gunicorn.conf.py's
// gdirty_* values (conf, keys without the prefix; confValues decoded them).
func (t clusterSettings) withConf(conf map[string]any, confPath string) (clusterSettings, error) {
	bad := func(key string, v any, why string) error {
		return &usageError{msg: fmt.Sprintf("%s: %s%s = %s: %s", confPath, ownPrefix, key, showValue(v), why)}
	}
	for key, p := range t.strings() {
		v, ok := conf[key]
		if !ok || v == nil || *p != "" {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return t, bad(key, v, "must be a string")
		}
		*p = s
	}
	for key, p := range t.durations() {
		v, ok := conf[key]
		if !ok || v == nil || *p != "" {
			continue
		}
		d, err := asSeconds(v)
		if err != nil {
			return t, bad(key, v, err.Error())
		}
		*p = d.String()
	}
	if v, ok := conf["spill"]; ok && v != nil && t.Spill == nil {
		b, err := asBool(v)
		if err != nil {
			return t, bad("spill", v, err.Error())
		}
		t.Spill = &b
	}
	return t, nil
}

// clusterFlagSet reports the first cluster flag given on the command line
// or in the environment, "" when none is.
func clusterFlagSet(c *cli.Context, flags []cli.Flag) string {
	for _, f := range flags {
		if name := f.Names()[0]; c.IsSet(name) {
			return "--" + name
		}
	}
	return ""
}
