package cluster

import (
	"strconv"

	"github.com/nats-io/nats.go"
)

// The messages of one remote call. Payload bytes travel as the NATS
// message data, untouched; what the call needs besides (kind, frame type
// and length, credits) travels in headers.
//
// node -> caller (on the caller's reply subject):
//
//	K=a  picked up: C=control subject of the call, N=node name, I=node pid
//	K=f  start of an answer frame: T=message type, L=payload length; the
//	     data is the first part, K=p parts follow until L bytes came
//	K=p  next part of the current frame
//	K=h  heartbeat: the node is alive and the call still runs
//	K=n  declined: a spilled call (S=1) and no free worker here
//
// caller -> node (request on the app's call subject, then the control
// subject):
//
//	request  L=request payload length, W=flow-control window, S=1 for a
//	         spilled call; the data is the first part, K=p parts follow on
//	         the control subject
//	K=p      next part of the request
//	K=k      credit: B=answer bytes written to the client so far
//	K=x      cancel: the client went away or the call timed out
const (
	hKind     = "K"
	hType     = "T"
	hLen      = "L"
	hCtl      = "C"
	hNode     = "N"
	hPID      = "I"
	hWindow   = "W"
	hConsumed = "B"
	hSpill    = "S"

	kindAck       = "a"
	kindFrame     = "f"
	kindPart      = "p"
	kindHeartbeat = "h"
	kindCredit    = "k"
	kindCancel    = "x"
	kindDecline   = "n"
)

// headerRoom is left free of max_payload for the headers of a part.
const headerRoom = 512

func newMsg(subject, kind string) *nats.Msg {
	m := &nats.Msg{Subject: subject, Header: nats.Header{}}
	m.Header[hKind] = []string{kind}
	return m
}

func setInt(m *nats.Msg, key string, v int64) { m.Header[key] = []string{strconv.FormatInt(v, 10)} }

func getInt(m *nats.Msg, key string) (int64, bool) {
	v, err := strconv.ParseInt(m.Header.Get(key), 10, 64)
	return v, err == nil
}

func kindOf(m *nats.Msg) string {
	if m.Header == nil {
		return ""
	}
	return m.Header.Get(hKind)
}

// isNoResponders reports the server's 503 status: nobody subscribes to the
// call subject, so no node hosts the app.
func isNoResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header != nil && m.Header.Get("Status") == "503"
}

// partSize is the largest data one message may carry on nc.
func partSize(nc *nats.Conn) int {
	n := int(nc.MaxPayload()) - headerRoom
	if n < 1024 {
		n = 1024
	}
	return n
}
