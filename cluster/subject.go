package cluster

import (
	"encoding/base64"
	"strconv"
)

// Subjects. Every subject lives under gd.<cluster>. so clusters sharing a
// NATS never see each other, and an account's permissions can be granted
// on gd.<cluster>.> alone.
//
//	gd.<c>.call.<app>           calls for one app (queue group "gdirty")
//	gd.<c>.reply.<node>.<call>  answers to a caller
//	gd.<c>.node.<node>.<call>   a caller's messages for a running call
//	gd.<c>.direct.<node>.<app>  spilled calls offered to one node
//	gd.<c>.ann                  membership announcements
//	gd.<c>.status               status requests (every node answers)
type subjects struct {
	prefix string
}

func newSubjects(cluster string) subjects { return subjects{prefix: "gd." + cluster + "."} }

// appToken encodes an app path as one subject token: NATS tokens cannot
// hold '.', '*', '>' or whitespace, and an app path is any string, so it
// is base64url (alphabet A-Za-z0-9-_) behind a fixed letter, which also
// gives the empty app path ("any worker") the token "a".
func appToken(app string) string { return "a" + base64.RawURLEncoding.EncodeToString([]byte(app)) }

// appFromToken reverses appToken.
func appFromToken(tok string) (string, bool) {
	if len(tok) == 0 || tok[0] != 'a' {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok[1:])
	return string(b), err == nil
}

func (s subjects) call(app string) string { return s.prefix + "call." + appToken(app) }

func (s subjects) replyAll(node string) string { return s.prefix + "reply." + node + ".*" }

func (s subjects) reply(node string, call uint64) string {
	return s.prefix + "reply." + node + "." + strconv.FormatUint(call, 36)
}

func (s subjects) ctlAll(node string) string { return s.prefix + "node." + node + ".*" }

func (s subjects) ctl(node string, call uint64) string {
	return s.prefix + "node." + node + "." + strconv.FormatUint(call, 36)
}

func (s subjects) direct(node, app string) string {
	return s.prefix + "direct." + node + "." + appToken(app)
}

func (s subjects) directAll(node string) string { return s.prefix + "direct." + node + ".*" }

func (s subjects) announce() string { return s.prefix + "ann" }

func (s subjects) status() string { return s.prefix + "status" }

// lastToken returns the id after the last dot, parsed as a call id.
func lastToken(subject string) (uint64, bool) {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			v, err := strconv.ParseUint(subject[i+1:], 36, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// queueGroup is the one queue group every subscriber of a call subject
// joins: the subject is per app already, so NATS picks one node per call.
const queueGroup = "gdirty"
