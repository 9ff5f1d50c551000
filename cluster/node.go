package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
	"github.com/sirupsen/logrus"
)

// Local is what a node needs from its own gdirty.
type Local struct {
	// Dial opens a connection to the local arbiter that never forwards
	// to the cluster (a node serves only what it hosts, so calls cannot
	// loop between nodes).
	Dial func() (net.Conn, error)
	// Hosted returns the app paths the local pool serves right now (apps
	// of booted workers).
	Hosted func() []string
	// Closing reports that the local arbiter is shutting down: calls from
	// other nodes are declined (they go to another node) and the app
	// subscriptions end.
	Closing func() bool
	// Workers returns the local worker count (for status).
	Workers func() int
	// Timeout is dirty_timeout, applied to remote calls as to local ones.
	Timeout time.Duration
	pool    *localPool // over Dial, made by NewNode

	// Free reports whether a call for app would get a local worker at
	// once (spilled calls are declined otherwise).
	Free func(app string) bool
}

// Node is one gdirty in the cluster: it serves calls for the apps its pool
// hosts, sends calls for other apps to the nodes that host them, and keeps
// the member list.
type Node struct {
	opts    Options
	nc      *nats.Conn
	log     logrus.FieldLogger
	local   Local
	subj    subjects
	id      string
	metrics *Metrics

	calls   *registry // calls this node makes (answers by reply subject)
	serving *registry // calls this node serves (control messages)

	mu       sync.Mutex
	appSubs  map[string]*nats.Subscription
	members  map[string]*Member
	started  time.Time
	fixedSub []*nats.Subscription
	done     chan struct{}
	wg       sync.WaitGroup
	closed   bool
}

// Member is one node as its announcements describe it.
type Member struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	PID      int       `json:"pid"`
	Apps     []string  `json:"apps"`
	Workers  int       `json:"workers"`
	Serving  int       `json:"serving"`  // remote calls it runs now
	Calling  int       `json:"calling"`  // calls it sent to other nodes
	Uptime   float64   `json:"uptime_s"` // seconds
	LastSeen time.Time `json:"-"`
}

// NewNode joins the cluster on nc; Close leaves it (nc stays open).
func NewNode(nc *nats.Conn, opts Options, local Local, log logrus.FieldLogger, metrics *Metrics) (*Node, error) {
	local.pool = newLocalPool(local.Dial)
	n := &Node{
		opts:    opts,
		nc:      nc,
		log:     log,
		local:   local,
		subj:    newSubjects(opts.Name),
		id:      nuid.Next(),
		metrics: metrics,
		calls:   newRegistry(),
		serving: newRegistry(),
		appSubs: map[string]*nats.Subscription{},
		members: map[string]*Member{},
		started: time.Now(),
		done:    make(chan struct{}),
	}
	subs := []struct {
		subject string
		cb      nats.MsgHandler
	}{
		{n.subj.replyAll(n.id), n.calls.deliver},
		{n.subj.ctlAll(n.id), n.serving.deliver},
		{n.subj.directAll(n.id), n.onCall},
		{n.subj.announce(), n.onAnnounce},
		{n.subj.status(), n.onStatus},
	}
	for _, s := range subs {
		sub, err := nc.Subscribe(s.subject, s.cb)
		if err != nil {
			n.unsubscribeAll()
			return nil, fmt.Errorf("subscribe %s: %w", s.subject, err)
		}
		// Callbacks never block (they only queue), so there is nothing a
		// limit would protect; a limit hit would drop call messages.
		_ = sub.SetPendingLimits(-1, -1)
		n.fixedSub = append(n.fixedSub, sub)
	}
	n.tick()
	n.wg.Add(1)
	go n.loop()
	return n, nil
}

// ID is the node's unique id in the cluster.
func (n *Node) ID() string { return n.id }

func (n *Node) loop() {
	defer n.wg.Done()
	// Four heartbeats per liveness bound: a late tick or two on a busy
	// machine must not make a caller give up on a live node.
	t := time.NewTicker(n.opts.Liveness / 4)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			n.tick()
		}
	}
}

// tick keeps the app subscriptions in step with the pool, heartbeats the
// calls this node serves, and announces the node.
func (n *Node) tick() {
	n.syncApps()
	if n.nc.IsConnected() {
		for _, reply := range n.serving.replies() {
			_ = n.nc.PublishMsg(newMsg(reply, kindHeartbeat))
		}
	}
	n.announce()
	n.expireMembers()
}

func (n *Node) syncApps() {
	want := map[string]bool{}
	if n.local.Hosted != nil && !n.closing() {
		apps := n.local.Hosted()
		for _, a := range apps {
			want[a] = true
		}
		if len(apps) > 0 {
			want[""] = true // "any worker" calls
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	for app, sub := range n.appSubs {
		if !want[app] {
			_ = sub.Unsubscribe()
			delete(n.appSubs, app)
		}
	}
	for app := range want {
		if n.appSubs[app] != nil {
			continue
		}
		sub, err := n.nc.QueueSubscribe(n.subj.call(app), queueGroup, n.onCall)
		if err != nil {
			n.log.Warnf("cluster: cannot serve %q: %v", app, err)
			continue
		}
		_ = sub.SetPendingLimits(-1, -1)
		n.appSubs[app] = sub
	}
}

func (n *Node) closing() bool { return n.local.Closing != nil && n.local.Closing() }

func (n *Node) self() *Member {
	m := &Member{ID: n.id, Name: n.opts.NodeName, PID: os.Getpid(), Serving: n.serving.len(), Calling: n.calls.len(),
		Uptime: time.Since(n.started).Seconds(), Apps: []string{}}
	n.mu.Lock()
	for app := range n.appSubs {
		if app != "" {
			m.Apps = append(m.Apps, app)
		}
	}
	n.mu.Unlock()
	sort.Strings(m.Apps)
	if n.local.Workers != nil {
		m.Workers = n.local.Workers()
	}
	return m
}

func (n *Node) announce() {
	b, err := json.Marshal(n.self())
	if err == nil && n.nc.IsConnected() {
		_ = n.nc.Publish(n.subj.announce(), b)
	}
}

// maxAnnounce bounds an announcement we decode.
const maxAnnounce = 1 << 20

func (n *Node) onAnnounce(m *nats.Msg) {
	if len(m.Data) > maxAnnounce {
		return
	}
	var mem Member
	if err := json.Unmarshal(m.Data, &mem); err != nil || mem.ID == "" {
		return
	}
	mem.LastSeen = time.Now()
	n.mu.Lock()
	if _, known := n.members[mem.ID]; !known && mem.ID != n.id {
		n.log.Infof("cluster: node %s joined (apps: %v)", mem.Name, mem.Apps)
	}
	n.members[mem.ID] = &mem
	n.mu.Unlock()
}

func (n *Node) expireMembers() {
	limit := time.Now().Add(-3 * n.opts.Liveness)
	n.mu.Lock()
	defer n.mu.Unlock()
	for id, m := range n.members {
		if m.LastSeen.Before(limit) && id != n.id {
			n.log.Infof("cluster: node %s left", m.Name)
			delete(n.members, id)
		}
	}
}

// othersHosting returns the other nodes that announced app, in random
// order (spill targets).
func (n *Node) othersHosting(app string) []string {
	n.mu.Lock()
	var out []string
	for id, m := range n.members {
		if id == n.id {
			continue
		}
		if (app == "" && len(m.Apps) > 0) || slices.Contains(m.Apps, app) {
			out = append(out, id)
		}
	}
	n.mu.Unlock()
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// Members returns the nodes heard from recently (this one included), by name.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for _, m := range n.members {
		out = append(out, *m)
	}
	n.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (n *Node) onStatus(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	b, err := json.Marshal(n.self())
	if err == nil {
		_ = n.nc.Publish(m.Reply, b)
	}
}

func (n *Node) unsubscribeAll() {
	for _, s := range n.fixedSub {
		_ = s.Unsubscribe()
	}
	for app, s := range n.appSubs {
		_ = s.Unsubscribe()
		delete(n.appSubs, app)
	}
}

// Close leaves the cluster: no new calls are taken; calls in progress end
// as their connections close.
func (n *Node) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	n.unsubscribeAll()
	n.mu.Unlock()
	close(n.done)
	n.wg.Wait()
	n.local.pool.close()
	if n.nc.IsConnected() {
		_ = n.nc.FlushTimeout(time.Second)
	}
}
