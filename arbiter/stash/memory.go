package stash

import "sync"

// Accounting of the memory bound: every entry costs the length of its raw
// key and raw value plus EntryOverhead; every table costs the length of its
// raw name plus TableOverhead. The overheads approximate what Go spends on
// the index, the ordered slot and the string headers, so the bound tracks
// the real heap closely enough to size a deployment by.
const (
	EntryOverhead = 96
	TableOverhead = 512
)

// DefaultMaxBytes is the default memory bound (--stash-max-bytes).
const DefaultMaxBytes = 256 << 20

func entryCost(key, value string) int64 { return int64(len(key)+len(value)) + EntryOverhead }
func tableCost(name string) int64       { return int64(len(name)) + TableOverhead }

// Memory is the in-process Backend: the stash held in gdirty's memory, as
// gunicorn's arbiter holds it in its own. Tables and entries keep insertion
// order like Python dicts. A single RWMutex guards everything; operations
// only touch an index and append to or mark slots, and the expensive parts
// (copying values, matching patterns, building responses) happen outside
// the lock.
type Memory struct {
	mu     sync.RWMutex
	max    int64
	used   int64
	tables omap[*memTable]
}

type memTable struct {
	entries omap[string]
	bytes   int64 // accounted cost of the entries
}

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty in-memory stash bounded to maxBytes of
// accounted memory (see EntryOverhead); 0 means unbounded.
func NewMemory(maxBytes int64) *Memory {
	if maxBytes < 0 {
		maxBytes = 0
	}
	return &Memory{max: maxBytes}
}

// Usage returns the accounted bytes in use and the bound (0: unbounded).
func (m *Memory) Usage() (used, max int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.used, m.max
}

// reserve checks that need more bytes fit; a change that does not grow the
// stash always fits. Callers add need to m.used once the change is made.
func (m *Memory) reserve(need int64) error {
	if m.max > 0 && need > 0 && m.used+need > m.max {
		return &LimitError{MaxBytes: m.max, UsedBytes: m.used, NeedBytes: need}
	}
	return nil
}

func (m *Memory) createTable(id, name string) *memTable {
	t := &memTable{}
	m.tables.add(id, name, t)
	m.used += tableCost(name)
	return t
}

func (m *Memory) table(id string) *memTable {
	if s := m.tables.get(id); s != nil {
		return s.val
	}
	return nil
}

func (m *Memory) Put(table, key, value string) error {
	tid, err := Identity(table)
	if err != nil {
		return err
	}
	kid, kerr := Identity(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.table(tid)
	var need int64
	if t == nil {
		need = tableCost(table)
	}
	if kerr != nil {
		// gunicorn: the table is created, then hashing the key fails.
		if t == nil {
			if err := m.reserve(need); err != nil {
				return err
			}
			m.createTable(tid, table)
		}
		return kerr
	}
	var old *slot[string]
	if t != nil {
		old = t.entries.get(kid)
	}
	var cost int64
	if old != nil {
		// The first key encoding stays; only the value changes.
		cost = int64(len(value)) - int64(len(old.val))
	} else {
		cost = entryCost(key, value)
	}
	if err := m.reserve(need + cost); err != nil {
		return err
	}
	if t == nil {
		t = m.createTable(tid, table)
	}
	if old != nil {
		old.val = value
	} else {
		t.entries.add(kid, key, value)
	}
	t.bytes += cost
	m.used += cost
	return nil
}

func (m *Memory) Get(table, key string) (string, error) {
	tid, err := Identity(table)
	if err != nil {
		return "", err
	}
	kid, kerr := Identity(key)
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.table(tid)
	if t == nil {
		return "", ErrKeyNotFound
	}
	if kerr != nil {
		return "", kerr
	}
	s := t.entries.get(kid)
	if s == nil {
		return "", ErrKeyNotFound
	}
	return s.val, nil
}

func (m *Memory) Delete(table, key string) (bool, error) {
	tid, err := Identity(table)
	if err != nil {
		return false, err
	}
	kid, kerr := Identity(key)
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.table(tid)
	if t == nil {
		return false, nil
	}
	if kerr != nil {
		return false, kerr
	}
	s, ok := t.entries.remove(kid)
	if !ok {
		return false, nil
	}
	cost := entryCost(s.key, s.val)
	t.bytes -= cost
	m.used -= cost
	return true, nil
}

func (m *Memory) Keys(table string) ([]string, error) {
	tid, err := Identity(table)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.table(tid)
	if t == nil {
		return nil, nil
	}
	return t.entries.keys(), nil
}

func (m *Memory) Clear(table string) error {
	tid, err := Identity(table)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.table(tid); t != nil {
		t.entries.clear()
		m.used -= t.bytes
		t.bytes = 0
	}
	return nil
}

func (m *Memory) Len(table string) (int, error) {
	tid, err := Identity(table)
	if err != nil {
		return 0, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.table(tid)
	if t == nil {
		return 0, ErrTableNotFound
	}
	return t.entries.len(), nil
}

func (m *Memory) Ensure(table string) error {
	tid, err := Identity(table)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.table(tid) != nil {
		return nil
	}
	if err := m.reserve(tableCost(table)); err != nil {
		return err
	}
	m.createTable(tid, table)
	return nil
}

func (m *Memory) DeleteTable(table string) (bool, error) {
	tid, err := Identity(table)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.tables.remove(tid)
	if !ok {
		return false, nil
	}
	m.used -= tableCost(s.key) + s.val.bytes
	return true, nil
}

func (m *Memory) Tables() ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.tables.keys(), nil
}

func (m *Memory) HasTable(table string) (bool, error) {
	tid, err := Identity(table)
	if err != nil {
		return false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.table(tid) != nil, nil
}

func (m *Memory) Has(table, key string) (bool, error) {
	tid, err := Identity(table)
	if err != nil {
		return false, err
	}
	kid, kerr := Identity(key)
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.table(tid)
	if t == nil {
		return false, nil
	}
	if kerr != nil {
		return false, kerr
	}
	return t.entries.get(kid) != nil, nil
}

// omap is an insertion-ordered map from identity to (first key encoding,
// value), like a Python dict: replacing a value keeps the position,
// deleting and re-adding moves the key to the end. Deleted slots are
// tombstones until they outnumber the live ones, then the slice is
// compacted, so every operation is amortised O(1).
type omap[V any] struct {
	index map[string]int
	items []slot[V]
	dead  int
}

type slot[V any] struct {
	id   string
	key  string
	val  V
	gone bool
}

func (m *omap[V]) len() int { return len(m.items) - m.dead }

// get returns the live slot for id; the pointer is valid until the next add.
func (m *omap[V]) get(id string) *slot[V] {
	i, ok := m.index[id]
	if !ok {
		return nil
	}
	return &m.items[i]
}

func (m *omap[V]) add(id, key string, v V) {
	if m.index == nil {
		m.index = make(map[string]int)
	}
	m.index[id] = len(m.items)
	m.items = append(m.items, slot[V]{id: id, key: key, val: v})
}

func (m *omap[V]) remove(id string) (slot[V], bool) {
	i, ok := m.index[id]
	if !ok {
		return slot[V]{}, false
	}
	s := m.items[i]
	delete(m.index, id)
	m.items[i] = slot[V]{gone: true} // drop the references
	m.dead++
	if m.dead > 32 && m.dead*2 > len(m.items) {
		m.compact()
	}
	return s, true
}

func (m *omap[V]) compact() {
	live := make([]slot[V], 0, m.len())
	for _, s := range m.items {
		if !s.gone {
			m.index[s.id] = len(live)
			live = append(live, s)
		}
	}
	m.items, m.dead = live, 0
}

func (m *omap[V]) clear() {
	m.index, m.items, m.dead = nil, nil, 0
}

func (m *omap[V]) keys() []string {
	out := make([]string, 0, m.len())
	for _, s := range m.items {
		if !s.gone {
			out = append(out, s.key)
		}
	}
	return out
}

// Stats returns the number of tables and of entries across all tables
// (for metrics).
func (m *Memory) Stats() (tables, entries int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	tables = len(m.tables.index)
	for _, s := range m.tables.items {
		if !s.gone {
			entries += len(s.val.entries.index)
		}
	}
	return tables, entries
}
