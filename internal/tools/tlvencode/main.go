// Command tlvencode encodes the "input" values of a golden TLV vector file
// with gdirty's Go codec and prints {"case name": "hex of Go's bytes", ...}
// as JSON, so tests/test_codec_vectors.py can check that gunicorn decodes
// what Go encodes.
//
//	go run ./internal/tools/tlvencode testdata/golden/tlv_vectors.json
//
// The tagged value form is documented in testdata/golden/gen_vectors.py;
// this builder mirrors the one in compat/golden_test.go (a test file, so it
// cannot be imported from here).
package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/gdirty/gdirty/compat"
)

type tagged struct {
	T         string          `json:"t"`
	V         json.RawMessage `json:"v,omitempty"`
	Bits      string          `json:"bits,omitempty"`
	Hex       *string         `json:"hex,omitempty"`
	RepeatHex *string         `json:"repeat_hex,omitempty"`
	Repeat    *string         `json:"repeat,omitempty"`
	Count     int             `json:"count,omitempty"`
}

type vectorFile struct {
	Cases []struct {
		Name  string `json:"name"`
		Input tagged `json:"input"`
	} `json:"cases"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tlvencode testdata/golden/tlv_vectors.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "tlvencode:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var vf vectorFile
	if err := json.Unmarshal(data, &vf); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if len(vf.Cases) == 0 {
		return fmt.Errorf("%s has no cases", path)
	}
	out := make(map[string]string, len(vf.Cases))
	for _, c := range vf.Cases {
		v, err := build(c.Input)
		if err != nil {
			return fmt.Errorf("case %s: %w", c.Name, err)
		}
		enc, err := compat.Encode(v)
		if err != nil {
			return fmt.Errorf("case %s: encode: %w", c.Name, err)
		}
		if _, dup := out[c.Name]; dup {
			return fmt.Errorf("duplicate case name %s", c.Name)
		}
		out[c.Name] = hex.EncodeToString(enc)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out) // map keys are sorted: deterministic output
}

// build turns a tagged value into the Go model of a TLV value. Non-string
// dict keys become compat.PyStr(key), as gunicorn's encoder uses str(key);
// entries are appended in order without de-duplication, as gunicorn
// iterates dict.items().
func build(tv tagged) (any, error) {
	switch tv.T {
	case "none":
		return nil, nil
	case "bool":
		var b bool
		err := json.Unmarshal(tv.V, &b)
		return b, err
	case "int":
		var s string
		if err := json.Unmarshal(tv.V, &s); err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "float":
		bits, err := strconv.ParseUint(tv.Bits, 16, 64)
		return math.Float64frombits(bits), err
	case "bytes":
		switch {
		case tv.Hex != nil:
			return hex.DecodeString(*tv.Hex)
		case tv.RepeatHex != nil:
			unit, err := hex.DecodeString(*tv.RepeatHex)
			return bytes.Repeat(unit, tv.Count), err
		}
		return nil, fmt.Errorf("bytes value without hex")
	case "str":
		if tv.Repeat != nil {
			return strings.Repeat(*tv.Repeat, tv.Count), nil
		}
		var s string
		err := json.Unmarshal(tv.V, &s)
		return s, err
	case "list", "tuple":
		var items []tagged
		if err := json.Unmarshal(tv.V, &items); err != nil {
			return nil, err
		}
		out := make([]any, 0, len(items))
		for _, it := range items {
			v, err := build(it)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case "dict":
		var pairs [][2]tagged
		if err := json.Unmarshal(tv.V, &pairs); err != nil {
			return nil, err
		}
		d := &compat.Dict{}
		for _, p := range pairs {
			k, err := build(p[0])
			if err != nil {
				return nil, err
			}
			v, err := build(p[1])
			if err != nil {
				return nil, err
			}
			d.Keys = append(d.Keys, compat.PyStr(k))
			d.Values = append(d.Values, v)
		}
		return d, nil
	}
	return nil, fmt.Errorf("unknown tag %q", tv.T)
}
