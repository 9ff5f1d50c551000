package v0

import (
	"bytes"
	"unicode/utf8"

	"github.com/gdirty/gdirty/compat"
)

// Request is what the arbiter reads from a v0 request message.
type Request struct {
	// ID is the "id" value as json.loads gives it; "unknown" when absent,
	// the id gunicorn's arbiter answers its own errors with.
	ID any
	// Route carries app_path (for routing) and action (for metrics).
	Route compat.RequestRoute
	// Body is the message with leading whitespace cut: it starts with '{',
	// which is never a TLV type byte, so the worker knows a v0 request
	// from a v1 one by its first byte.
	Body []byte
}

// decodePrefix is the start of the message gunicorn 25.0's
// DirtyProtocol.decode gives a body json.loads refuses.
const decodePrefix = "Failed to decode message: "

// ScanRequest validates body completely, as json.loads(body.decode())
// would (UTF-8, grammar, NaN/Infinity, integer digit limit), and reads
// "id", "app_path" and "action" from the top-level object (the last
// occurrence wins, as in a Python dict). Other values are checked but not
// built. Nesting is bounded by compat.MaxDepth. Errors are
// *compat.ProtocolError carrying gunicorn's "Failed to decode message: "
// prefix and raw_data window.
func ScanRequest(body []byte) (Request, error) {
	if len(body) == 0 {
		return Request{}, protoErr(compat.KindTruncated, nil, "Empty message received")
	}
	if !utf8.Valid(body) {
		return Request{}, decodeErr(compat.KindInvalidUTF8, body, compat.PyUTF8Error(body))
	}
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		// json.loads refuses a str starting with U+FEFF before parsing.
		return Request{}, decodeErr(compat.KindUnsupportedType, body,
			"Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)")
	}
	p := &parser{b: body}
	p.ws()
	start := p.i
	if p.i >= len(body) || body[p.i] != '{' {
		// Valid JSON that is not an object still cannot be a request.
		if _, err := p.value(false, 0); err != nil {
			return Request{}, decodeErr(compat.KindUnsupportedType, body, err.Error())
		}
		return Request{}, decodeErr(compat.KindUnsupportedType, body, "the message is not a JSON object")
	}
	req := Request{ID: "unknown", Body: body[start:]}
	var app any
	if err := p.topObject(func(key string) bool {
		return key == "id" || key == "app_path" || key == "action"
	}, func(key string, v any) {
		switch key {
		case "id":
			req.ID = v
		case "app_path":
			app = v
		case "action":
			s, _ := v.(string)
			req.Route.Action = s
		}
	}); err != nil {
		return Request{}, decodeErr(compat.KindUnsupportedType, body, err.Error())
	}
	p.ws()
	if p.i != len(body) {
		return Request{}, decodeErr(compat.KindTrailingData, body, p.syntaxErr("Extra data", p.i).Error())
	}
	if s, ok := app.(string); ok {
		req.Route.AppPath, req.Route.AppIsString = s, true
	} else {
		req.Route.AppValue = app
	}
	return req, nil
}

// topObject parses the top-level object, building only the values whose
// key want accepts and handing them to got.
func (p *parser) topObject(want func(string) bool, got func(string, any)) error {
	p.i++ // '{'
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return p.syntaxErr("Expecting property name enclosed in double quotes", p.i)
		}
		k, err := p.str(true)
		if err != nil {
			return err
		}
		key := k.(string)
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return p.syntaxErr("Expecting ':' delimiter", p.i)
		}
		p.i++
		p.ws()
		build := want(key)
		v, err := p.value(build, 1)
		if err != nil {
			return err
		}
		if build {
			got(key, v)
		}
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == '}' {
			p.i++
			return nil
		}
		if p.i >= len(p.b) || p.b[p.i] != ',' {
			return p.syntaxErr("Expecting ',' delimiter", p.i)
		}
		p.i++
		p.ws()
	}
}

func decodeErr(kind compat.ErrorKind, body []byte, msg string) *compat.ProtocolError {
	return protoErr(kind, body, "%s%s", decodePrefix, msg)
}

// ErrorMessage is the body of gunicorn 25.0's
// make_error_response(id, error) as DirtyProtocol.encode writes it:
// {"type": "error", "id": <id>, "error": {"error_type", "message",
// "details"}}.
func ErrorMessage(id any, e *compat.DirtyError) ([]byte, error) {
	return Encode(compat.NewDict("type", "error", "id", id, "error", e.ToDict()))
}
