//go:build tools

// Package cluster's tools file pins the nats-server command in go.mod, so
// `make nats-server` builds the exact server the tests embed, from the
// module proxy, with no download step of its own.
package cluster

import _ "github.com/nats-io/nats-server/v2"
