package compat

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// TestEmitGoEncodings writes Go's encoding of every golden TLV input to the
// file named by GDIRTY_EMIT_GO_ENCODINGS ({"case name": "hex"}), for
// tests/test_codec_vectors.py to check that gunicorn decodes what Go
// encodes. It reuses the golden builder above instead of a second copy in
// a separate tool; without the variable there is nothing to emit.
func TestEmitGoEncodings(t *testing.T) {
	out := os.Getenv("GDIRTY_EMIT_GO_ENCODINGS")
	if out == "" {
		t.Skip("GDIRTY_EMIT_GO_ENCODINGS not set (run by tests/test_codec_vectors.py)")
	}
	encodings := map[string]string{}
	for _, c := range loadTLV(t).Cases {
		v, err := build(c.Input)
		if err != nil {
			t.Fatalf("case %s: %v", c.Name, err)
		}
		enc, err := Encode(v)
		if err != nil {
			t.Fatalf("case %s: encode: %v", c.Name, err)
		}
		if _, dup := encodings[c.Name]; dup {
			t.Fatalf("duplicate case name %s", c.Name)
		}
		encodings[c.Name] = hex.EncodeToString(enc)
	}
	data, err := json.Marshal(encodings)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
