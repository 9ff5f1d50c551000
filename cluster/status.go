package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
)

// Status asks every node of the cluster to describe itself and collects
// the answers that arrive within wait (nodes answer at once; wait only
// covers the network).
func Status(ctx context.Context, nc *nats.Conn, cluster string, wait time.Duration) ([]Member, error) {
	subj := newSubjects(cluster)
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subj.status(), inbox, nil); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	seen := map[string]bool{}
	var out []Member
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		if isNoResponders(m) || len(m.Data) > maxAnnounce {
			continue
		}
		var mem Member
		if json.Unmarshal(m.Data, &mem) != nil || mem.ID == "" || seen[mem.ID] {
			continue
		}
		seen[mem.ID] = true
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
