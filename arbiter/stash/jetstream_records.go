//go:build !lean

package stash

// Records of the JetStream stash (jetstream.go): how tables and entries
// are laid out in the bucket, and their key tokens.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// idToken turns an identity into a KV key token.
func idToken(id string) string {
	if strings.HasPrefix(id, "\xffnan") {
		// NaN identities are unique per process only; make them unique
		// across nodes too.
		var r [12]byte
		_, _ = rand.Read(r[:])
		return "n" + hex.EncodeToString(r[:])
	}
	if len(id) > 96 {
		sum := sha256.Sum256([]byte(id))
		return "h" + hex.EncodeToString(sum[:])
	}
	return "b" + base64.RawURLEncoding.EncodeToString([]byte(id))
}

type tableRec struct {
	key   string // KV key of the record
	rev   uint64
	order uint64
	gen   uint64
	name  string
}

func decodeTable(key string, e jetstream.KeyValueEntry) (*tableRec, error) {
	return decodeTableValue(key, e.Value(), e.Revision())
}

// decodeTableValue parses a table record; the bucket is shared, so a
// record is checked like any input (a raw name must be one TLV value).
func decodeTableValue(key string, v []byte, rev uint64) (*tableRec, error) {
	if len(v) < 17 {
		return nil, fmt.Errorf("cluster stash: corrupt table record %s", key)
	}
	if _, err := Identity(string(v[16:])); err != nil && !isUnhashable(err) {
		return nil, fmt.Errorf("cluster stash: corrupt table record %s", key)
	}
	r := &tableRec{key: key, rev: rev, order: binary.BigEndian.Uint64(v), gen: binary.BigEndian.Uint64(v[8:]), name: string(v[16:])}
	if r.order == 0 {
		r.order = r.rev
	}
	return r, nil
}

func randGen() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) | 1 // never 0
}

func tableValue(order, gen uint64, name string) []byte {
	v := make([]byte, 16, 16+len(name))
	binary.BigEndian.PutUint64(v, order)
	binary.BigEndian.PutUint64(v[8:], gen)
	return append(v, name...)
}

func (r *tableRec) entryPrefix(table string) string {
	return "e." + strings.TrimPrefix(r.key, "t.") + "." + fmt.Sprintf("%x", r.gen) + "."
}

func entryValue(order uint64, key, value string) []byte {
	v := make([]byte, 12, 12+len(key)+len(value))
	binary.BigEndian.PutUint64(v, order)
	binary.BigEndian.PutUint32(v[8:], uint32(len(key)))
	v = append(v, key...)
	return append(v, value...)
}

type entryRec struct {
	rev        uint64
	order      uint64
	key, value string
}

func decodeEntry(e jetstream.KeyValueEntry) (*entryRec, error) {
	return decodeEntryValue(e.Value(), e.Revision())
}

// decodeEntryValue parses an entry record.
func decodeEntryValue(v []byte, rev uint64) (*entryRec, error) {
	if len(v) < 12 {
		return nil, errors.New("cluster stash: corrupt entry")
	}
	n := binary.BigEndian.Uint32(v[8:])
	if uint64(n) > uint64(len(v)-12) || n == 0 || len(v)-12-int(n) == 0 {
		return nil, errors.New("cluster stash: corrupt entry")
	}
	r := &entryRec{rev: rev, order: binary.BigEndian.Uint64(v), key: string(v[12 : 12+n]), value: string(v[12+n:])}
	if r.order == 0 {
		r.order = r.rev
	}
	return r, nil
}

// isConflict reports a failed compare-and-set (someone wrote first).
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

func isUnhashable(err error) bool {
	var u *UnhashableError
	return errors.As(err, &u)
}
