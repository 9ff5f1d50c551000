package stash

import (
	"errors"
	"fmt"
)

// Backend holds the stash tables. Service speaks gunicorn's protocol and
// calls a Backend, so the in-memory store (Memory) can be swapped for one
// backed by Redis or NATS JetStream KV without touching the protocol side.
//
// Every table name, key and value is passed as its raw TLV encoding (one
// complete, already validated value, as it arrived on the wire) and must
// come back byte-identical: a backend stores bytes, it never decodes and
// re-encodes values. Identity of tables and keys follows Python dict
// equality; Identity implements it and a backend should key its storage by
// Identity(raw) while returning the first raw encoding stored.
//
// The order in which a method checks things is observable and follows
// gunicorn's arbiter (see the method comments): for example Get on a
// missing table reports ErrKeyNotFound without looking at the key, so an
// unhashable key only fails once the table exists.
//
// Errors: ErrKeyNotFound, ErrTableNotFound, *UnhashableError, *LimitError;
// any other error is sent to the client as a plain DirtyError with its text.
// Implementations must be safe for concurrent use.
type Backend interface {
	// Put stores value under key, creating the table if needed. An
	// existing key keeps its position and its first key encoding.
	// gunicorn creates the table before it hashes the key: a missing
	// table is created even when the key then proves unhashable.
	Put(table, key, value string) error
	// Get returns the value; ErrKeyNotFound when the table or the key is
	// missing.
	Get(table, key string) (string, error)
	// Delete removes key and reports whether it was there (false, nil for
	// a missing table, whatever the key).
	Delete(table, key string) (bool, error)
	// Keys returns the keys in insertion order (none for a missing table).
	Keys(table string) ([]string, error)
	// Clear empties the table; a missing table is not an error and is not
	// created.
	Clear(table string) error
	// Len returns the number of entries; ErrTableNotFound when missing.
	Len(table string) (int, error)
	// Ensure creates the table if it does not exist.
	Ensure(table string) error
	// DeleteTable removes the table and reports whether it existed.
	DeleteTable(table string) (bool, error)
	// Tables returns the table names in creation order.
	Tables() ([]string, error)
	// HasTable reports whether the table exists.
	HasTable(table string) (bool, error)
	// Has reports whether key is in the table (false, nil for a missing
	// table, whatever the key).
	Has(table, key string) (bool, error)
}

var (
	// ErrKeyNotFound is sent as StashKeyNotFoundError.
	ErrKeyNotFound = errors.New("stash: key not found")
	// ErrTableNotFound is sent as StashTableNotFoundError.
	ErrTableNotFound = errors.New("stash: table not found")

	errMalformed = errors.New("malformed TLV value")
)

// LimitError reports a change refused because the stash would grow past
// its memory bound. Nothing was changed.
type LimitError struct {
	MaxBytes  int64 // the bound (--stash-max-bytes)
	UsedBytes int64 // accounted bytes in use before the change
	NeedBytes int64 // bytes the change would add
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Stash memory limit exceeded: this change needs %d more bytes, %d of %d bytes are in use "+
		"(raise gdirty's --stash-max-bytes, or delete or clear entries)", e.NeedBytes, e.UsedBytes, e.MaxBytes)
}
