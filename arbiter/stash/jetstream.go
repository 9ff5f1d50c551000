//go:build !lean

package stash

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream is the cluster Backend (--stash cluster): every node's stash is
// one JetStream key-value bucket, so a value put on one host is read on
// another and survives the restart of any gdirty.
//
// Layout (bucket keys use only A-Za-z0-9-_=. as KV keys must):
//
//	t.<table id>                 [8 order][8 generation][raw table name]
//	e.<table id>.<gen>.<key id>  [8 order][4 key length][raw key][raw value]
//
// Ids are Identity() encoded (base64url, or a SHA-256 for long ones), so
// Python key identity holds across nodes; the raw encodings stored are the
// first ones put, returned byte-identical. Order is the bucket revision of
// the entry's creation (0 in a fresh record means "my own revision"), so
// keys() and tables() keep insertion order across nodes; an update keeps it
// (compare-and-set on the revision), delete and re-put moves the key to the
// end as in a Python dict. Entries live under their table's generation:
// clear and delete_table switch or drop the generation in one write, so no
// reader ever sees half a clear, and old entries are purged afterwards.
//
// What the engine cannot give exactly (documented in the README):
//
//   - A put that races with clear or delete_table on another node can land
//     in the old generation and vanish with it (as if it ran just before).
//   - The memory bound is the bucket's byte limit (--stash-max-bytes),
//     counted by JetStream (raw bytes plus its per-message overhead), not
//     gdirty's accounting; LimitError reports JetStream's figures.
//   - One value is at most the NATS server's max_payload (1 MiB by
//     default) minus the entry's header; a larger put fails with a
//     StashError naming the limit.
//   - NaN keys are distinct per put, as in the in-memory stash.
type JetStream struct {
	kv      jetstream.KeyValue
	max     int64
	timeout time.Duration
	maxVal  int
}

var _ Backend = (*JetStream)(nil)

// BucketName is the bucket that holds the stash of a cluster.
func BucketName(cluster string) string { return "gdirty_stash_" + cluster }

// NewJetStream opens (creating if needed) the stash bucket of cluster on
// nc, bounded to maxBytes (0: no bound). The bucket keeps one revision per
// key on file storage.
func NewJetStream(ctx context.Context, nc *nats.Conn, cluster string, maxBytes int64) (*JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("cluster stash: %w", err)
	}
	limit := maxBytes
	if limit <= 0 {
		limit = -1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketName(cluster),
		Description: "gdirty stash (gunicorn dirty stash tables) of cluster " + cluster,
		History:     1,
		MaxBytes:    limit,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster stash bucket %s: %w", BucketName(cluster), err)
	}
	return &JetStream{kv: kv, max: maxBytes, timeout: 10 * time.Second, maxVal: int(nc.MaxPayload()) - 1024}, nil
}

func (j *JetStream) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), j.timeout)
}

func (j *JetStream) tableKey(table string) (string, error) {
	id, err := Identity(table)
	if err != nil {
		return "", err
	}
	return "t." + idToken(id), nil
}

// getTable returns the table's record, nil when the table does not exist.
func (j *JetStream) getTable(ctx context.Context, tkey string) (*tableRec, error) {
	e, err := j.kv.Get(ctx, tkey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, j.wrap(err)
	}
	return decodeTable(tkey, e)
}

// ensureTable returns the table's record, creating the table if needed.
func (j *JetStream) ensureTable(ctx context.Context, tkey, table string) (*tableRec, error) {
	for {
		r, err := j.getTable(ctx, tkey)
		if err != nil || r != nil {
			return r, err
		}
		_, err = j.kv.Create(ctx, tkey, tableValue(0, randGen(), table))
		if err != nil && !isConflict(err) {
			return nil, j.wrap(err)
		}
		// Created (or another node just did): read it back.
	}
}

func (j *JetStream) getEntry(ctx context.Context, ekey string) (*entryRec, error) {
	e, err := j.kv.Get(ctx, ekey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, j.wrap(err)
	}
	return decodeEntry(e)
}

// wrap turns engine errors into the stash's: a full bucket is a
// LimitError, anything else says it came from the cluster stash.
func (j *JetStream) wrap(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "maximum bytes exceeded") || strings.Contains(msg, "insufficient resources"):
		used := int64(-1)
		ctx, cancel := j.ctx()
		defer cancel()
		if st, serr := j.kv.Status(ctx); serr == nil {
			used = int64(st.Bytes())
		}
		return &LimitError{MaxBytes: j.max, UsedBytes: used}
	case strings.Contains(msg, "maximum payload exceeded") || errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("cluster stash: value too large for one NATS message (max_payload is about %d bytes)", j.maxVal)
	}
	return fmt.Errorf("cluster stash: %w", err)
}

func (j *JetStream) entryKey(r *tableRec, key string) (string, error) {
	id, err := Identity(key)
	if err != nil {
		return "", err
	}
	return r.entryPrefix("") + idToken(id), nil
}

func (j *JetStream) Put(table, key, value string) error {
	tkey, err := j.tableKey(table)
	if err != nil {
		return err
	}
	if len(key)+len(value)+12 > j.maxVal {
		return fmt.Errorf("cluster stash: value too large for one NATS message (%d bytes, max_payload allows about %d)", len(key)+len(value), j.maxVal)
	}
	ctx, cancel := j.ctx()
	defer cancel()
	r, err := j.ensureTable(ctx, tkey, table)
	if err != nil {
		return err
	}
	ekey, err := j.entryKey(r, key)
	if err != nil {
		return err // gunicorn: the table exists, then hashing the key fails
	}
	for {
		old, err := j.getEntry(ctx, ekey)
		if err != nil {
			return err
		}
		if old == nil {
			_, err = j.kv.Create(ctx, ekey, entryValue(0, key, value))
		} else {
			// The first key encoding and the position stay.
			_, err = j.kv.Update(ctx, ekey, entryValue(old.order, old.key, value), old.rev)
		}
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return j.wrap(err)
		}
	}
}

// lookup finds the table and the entry key; r is nil for a missing table.
func (j *JetStream) lookup(ctx context.Context, table, key string) (r *tableRec, ekey string, err error) {
	tkey, err := j.tableKey(table)
	if err != nil {
		return nil, "", err
	}
	if r, err = j.getTable(ctx, tkey); err != nil || r == nil {
		return nil, "", err
	}
	ekey, err = j.entryKey(r, key)
	return r, ekey, err
}

func (j *JetStream) Get(table, key string) (string, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	r, ekey, err := j.lookup(ctx, table, key)
	if err != nil {
		return "", err
	}
	if r == nil {
		return "", ErrKeyNotFound
	}
	e, err := j.getEntry(ctx, ekey)
	if err != nil {
		return "", err
	}
	if e == nil {
		return "", ErrKeyNotFound
	}
	return e.value, nil
}

func (j *JetStream) Delete(table, key string) (bool, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	r, ekey, err := j.lookup(ctx, table, key)
	if err != nil || r == nil {
		return false, err
	}
	for {
		e, err := j.getEntry(ctx, ekey)
		if err != nil || e == nil {
			return false, err
		}
		err = j.kv.Delete(ctx, ekey, jetstream.LastRevision(e.rev))
		if err == nil {
			return true, nil
		}
		if !isConflict(err) {
			return false, j.wrap(err)
		}
	}
}

// entries returns the live entries of a table generation, in insertion order.
func (j *JetStream) entries(ctx context.Context, r *tableRec) ([]*entryRec, error) {
	return listKeys(ctx, j, r.entryPrefix("")+"*", decodeEntry, func(e *entryRec) uint64 { return e.order })
}

// listKeys reads every live key matching pattern through a watch (which
// delivers the current values, then nil), decoded and sorted by order.
func listKeys[T any](ctx context.Context, j *JetStream, pattern string, decode func(jetstream.KeyValueEntry) (T, error), order func(T) uint64) ([]T, error) {
	w, err := j.kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, j.wrap(err)
	}
	defer w.Stop()
	var out []T
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("cluster stash: listing stopped")
			}
			if e == nil {
				sort.Slice(out, func(a, b int) bool { return order(out[a]) < order(out[b]) })
				return out, nil
			}
			v, err := decode(e)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		case <-ctx.Done():
			return nil, j.wrap(ctx.Err())
		}
	}
}

func (j *JetStream) Keys(table string) ([]string, error) {
	tkey, err := j.tableKey(table)
	if err != nil {
		return nil, err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	r, err := j.getTable(ctx, tkey)
	if err != nil || r == nil {
		return nil, err
	}
	es, err := j.entries(ctx, r)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(es))
	for i, e := range es {
		keys[i] = e.key
	}
	return keys, nil
}

// purgeGeneration removes the entries of a table generation nothing can
// reach any more (after clear or delete_table); best effort.
func (j *JetStream) purgeGeneration(ctx context.Context, r *tableRec) {
	lister, err := j.kv.ListKeysFiltered(ctx, r.entryPrefix("")+"*")
	if err != nil {
		return
	}
	for k := range lister.Keys() {
		_ = j.kv.Purge(ctx, k)
	}
}

func (j *JetStream) Clear(table string) error {
	tkey, err := j.tableKey(table)
	if err != nil {
		return err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	for {
		r, err := j.getTable(ctx, tkey)
		if err != nil || r == nil {
			return err
		}
		// A new generation empties the table in one write; the table keeps
		// its position.
		_, err = j.kv.Update(ctx, tkey, tableValue(r.order, randGen(), r.name), r.rev)
		if err == nil {
			j.purgeGeneration(ctx, r)
			return nil
		}
		if !isConflict(err) {
			return j.wrap(err)
		}
	}
}

func (j *JetStream) Len(table string) (int, error) {
	tkey, err := j.tableKey(table)
	if err != nil {
		return 0, err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	r, err := j.getTable(ctx, tkey)
	if err != nil {
		return 0, err
	}
	if r == nil {
		return 0, ErrTableNotFound
	}
	lister, err := j.kv.ListKeysFiltered(ctx, r.entryPrefix("")+"*")
	if err != nil {
		return 0, j.wrap(err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n, nil
}

func (j *JetStream) Ensure(table string) error {
	tkey, err := j.tableKey(table)
	if err != nil {
		return err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	_, err = j.ensureTable(ctx, tkey, table)
	return err
}

func (j *JetStream) DeleteTable(table string) (bool, error) {
	tkey, err := j.tableKey(table)
	if err != nil {
		return false, err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	for {
		r, err := j.getTable(ctx, tkey)
		if err != nil || r == nil {
			return false, err
		}
		err = j.kv.Delete(ctx, tkey, jetstream.LastRevision(r.rev))
		if err == nil {
			j.purgeGeneration(ctx, r)
			return true, nil
		}
		if !isConflict(err) {
			return false, j.wrap(err)
		}
	}
}

// tables returns the table records in creation order.
func (j *JetStream) tables(ctx context.Context) ([]*tableRec, error) {
	return listKeys(ctx, j, "t.*", func(e jetstream.KeyValueEntry) (*tableRec, error) {
		return decodeTable(e.Key(), e)
	}, func(r *tableRec) uint64 { return r.order })
}

func (j *JetStream) Tables() ([]string, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	rs, err := j.tables(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.name
	}
	return names, nil
}

func (j *JetStream) HasTable(table string) (bool, error) {
	tkey, err := j.tableKey(table)
	if err != nil {
		return false, err
	}
	ctx, cancel := j.ctx()
	defer cancel()
	r, err := j.getTable(ctx, tkey)
	return r != nil, err
}

func (j *JetStream) Has(table, key string) (bool, error) {
	ctx, cancel := j.ctx()
	defer cancel()
	r, ekey, err := j.lookup(ctx, table, key)
	if err != nil || r == nil {
		return false, err
	}
	e, err := j.getEntry(ctx, ekey)
	return e != nil, err
}

// Stats counts tables and entries (for metrics; one listing per scrape).
func (j *JetStream) Stats() (tables, entries int) {
	ctx, cancel := j.ctx()
	defer cancel()
	rs, err := j.tables(ctx)
	if err != nil {
		return 0, 0
	}
	for _, r := range rs {
		if es, err := j.entries(ctx, r); err == nil {
			entries += len(es)
		}
	}
	return len(rs), entries
}

// Usage returns the bucket's bytes and its bound (0: unbounded).
func (j *JetStream) Usage() (used, max int64) {
	ctx, cancel := j.ctx()
	defer cancel()
	if st, err := j.kv.Status(ctx); err == nil {
		used = int64(st.Bytes())
	}
	return used, j.max
}
