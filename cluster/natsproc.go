package cluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// EmbeddedMaxPayload is the max_payload of the server --cluster-listen
// runs: larger than NATS's 1 MiB default so typical answers travel in one
// message (larger ones are split anyway).
const EmbeddedMaxPayload = 8 << 20

// ServerProc is the real nats-server that --cluster-listen runs for a small
// deployment without a NATS of its own. It is a child process of gdirty
// rather than linked in: linking nats-server would cost every gdirty
// (clustered or not) about 3 MiB of resident memory at start-up. It dies
// with gdirty (parent-death signal).
type ServerProc struct {
	cmd  *exec.Cmd
	dir  string
	done chan struct{}
	URL  string
}

// FindServer locates the nats-server binary: the given path, else
// nats-server next to the gdirty executable (where `make` builds both),
// else on PATH.
func FindServer(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "nats-server")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("nats-server")
	if err != nil {
		return "", errors.New("--cluster-listen needs the nats-server binary: `make nats-server` builds it next to gdirty, or put it on PATH, or pass --cluster-nats-server")
	}
	return p, nil
}

// StartServer runs nats-server on o.Listen with JetStream storing under
// o.DataDir (default: a directory under the system temp dir named after
// the cluster and port, so a restarted gdirty finds its stash again).
// Clients must present the token or user and password this node uses, if
// any; the secrets go into a 0600 config file, never onto a command line.
func StartServer(binary string, o *Options, log logrus.FieldLogger) (*ServerProc, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("--cluster-listen %q: need a port number", o.Listen)
	}
	dataDir := o.DataDir
	if dataDir == "" {
		dataDir = filepath.Join(os.TempDir(), fmt.Sprintf("gdirty-nats-%s-%d", o.Name, port))
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--cluster-data-dir: %w", err)
	}
	if o.CredsFile != "" {
		return nil, errors.New("--cluster-listen: the server gdirty runs takes a token or user and password, not a creds file")
	}
	dir, err := os.MkdirTemp("", "gdirty-nats-conf-")
	if err != nil {
		return nil, fmt.Errorf("nats-server config: %w", err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(serverConfig(host, port, dataDir, o)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("nats-server config: %w", err)
	}
	cmd := exec.Command(binary, "-c", conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	p := &ServerProc{cmd: cmd, dir: dir, done: make(chan struct{})}
	go p.pipeLog(out, log.WithField("component", "nats-server"))
	go func() { _ = cmd.Wait(); close(p.done) }()
	dialHost := host
	if dialHost == "" || dialHost == "0.0.0.0" || dialHost == "::" {
		dialHost = "127.0.0.1"
	}
	addr := net.JoinHostPort(dialHost, strconv.Itoa(port))
	if err := waitListening(addr, p.done, 15*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("nats-server on %s: %w", o.Listen, err)
	}
	p.URL = "nats://" + addr
	log.Infof("cluster: nats-server (pid %d) listening on %s, JetStream in %s", cmd.Process.Pid, o.Listen, dataDir)
	return p, nil
}

// serverConfig writes nats-server's configuration (its own format).
func serverConfig(host string, port int, dataDir string, o *Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: %s\n", strconv.Quote(net.JoinHostPort(host, strconv.Itoa(port))))
	fmt.Fprintf(&b, "server_name: %s\n", strconv.Quote(strings.NewReplacer(" ", "_", ":", "_").Replace(o.NodeName)))
	fmt.Fprintf(&b, "max_payload: %d\n", EmbeddedMaxPayload)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %s\n}\n", strconv.Quote(dataDir))
	switch {
	case o.Token != "":
		fmt.Fprintf(&b, "authorization {\n  token: %s\n}\n", strconv.Quote(o.Token))
	case o.User != "":
		fmt.Fprintf(&b, "authorization {\n  user: %s\n  password: %s\n}\n", strconv.Quote(o.User), strconv.Quote(o.Password))
	}
	return b.String()
}

// waitListening waits until addr greets like a NATS server.
func waitListening(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			var hello [4]byte
			_, err = io.ReadFull(conn, hello[:])
			conn.Close()
			if err == nil && string(hello[:]) == "INFO" {
				return nil
			}
		}
		select {
		case <-exited:
			return errors.New("exited during start-up (see its log lines above)")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening after %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pipeLog passes the server's log lines to gdirty's log: errors and
// warnings as such, the rest (start-up banner, notices) at debug level.
func (p *ServerProc) pipeLog(r io.Reader, log logrus.FieldLogger) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, "[ERR]") || strings.Contains(line, "[FTL]"):
			log.Error(line)
		case strings.Contains(line, "[WRN]"):
			log.Warn(line)
		default:
			log.Debug(line)
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL after 10s) and removes its
// config file; the JetStream data stays.
func (p *ServerProc) Stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	os.RemoveAll(p.dir)
}
