package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/arbiter"
	"github.com/gdirty/gdirty/compat"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "ask a running dirty arbiter (gdirty or gunicorn's own) for its workers",
		UsageText: "gdirty status [--socket PATH] [--json]\n   gdirty status --cluster nats://HOST:PORT [--cluster-name NAME] [--json]",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "socket", EnvVars: []string{"GUNICORN_DIRTY_SOCKET", "GDIRTY_SOCKET"}, Usage: "arbiter socket (default: $GUNICORN_DIRTY_SOCKET)"},
			&cli.BoolFlag{Name: "json", Usage: "print the raw STATUS result as JSON"},
			&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "give up after this long"},
			&cli.DurationFlag{Name: "wait", Value: time.Second, Usage: "with --cluster: how long to collect the nodes' answers"},
		}, clusterConnFlags()...),
		Action: func(c *cli.Context) error {
			if c.IsSet("cluster") {
				return clusterStatus(c)
			}
			path := c.String("socket")
			if path == "" {
				return &usageError{msg: "no socket: pass --socket or set GUNICORN_DIRTY_SOCKET"}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			result, err := arbiter.Query(ctx, path, compat.MsgStatus, nil)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(toJSON(result))
			}
			return printStatus(c.App.Writer, result)
		},
	}
}

// toJSON converts a decoded TLV value to something encoding/json keeps in
// order and renders like Python's json (dicts stay ordered).
func toJSON(v any) any {
	switch x := v.(type) {
	case *compat.Dict:
		return orderedJSON{x}
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = toJSON(item)
		}
		return out
	case []byte:
		return string(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return compat.PyFloatRepr(x)
		}
		return pyFloat(x)
	default:
		return x
	}
}

// pyFloat keeps a float a float in JSON, as Python's json does: 1.0 is
// written "1.0", not "1" (which readers would take for an int).
type pyFloat float64

func (f pyFloat) MarshalJSON() ([]byte, error) { return []byte(compat.PyFloatRepr(float64(f))), nil }

type orderedJSON struct{ d *compat.Dict }

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < o.d.Len(); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(o.d.Keys[i])
		v, err := json.Marshal(toJSON(o.d.Values[i]))
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

func printStatus(w io.Writer, result any) error {
	d, ok := result.(*compat.Dict)
	if !ok {
		return fmt.Errorf("unexpected STATUS result: %s", compat.PyRepr(result))
	}
	get := func(d *compat.Dict, k string) any { v, _ := d.Get(k); return v }
	fmt.Fprintf(w, "arbiter pid %s, %s workers\napps: %s\n\n",
		compat.PyStr(get(d, "arbiter_pid")), compat.PyStr(get(d, "worker_count")), joinList(get(d, "apps")))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	workers, _ := get(d, "workers").([]any)
	extra := extraColumns(workers)
	header := "PID\tAGE\tBOOTED\tHEARTBEAT\t"
	for _, c := range extra {
		header += strings.ToUpper(c) + "\t"
	}
	fmt.Fprintln(tw, header+"APPS")
	for _, wv := range workers {
		wd, ok := wv.(*compat.Dict)
		if !ok {
			continue
		}
		booted := "no"
		if b, _ := get(wd, "booted").(bool); b {
			booted = "yes"
		}
		hb := "-"
		if f, ok := get(wd, "last_heartbeat").(float64); ok {
			hb = fmt.Sprintf("%.2fs ago", f)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t", compat.PyStr(get(wd, "pid")), compat.PyStr(get(wd, "age")), booted, hb)
		for _, c := range extra {
			v, ok := wd.Get(c)
			switch {
			case !ok || v == nil:
				fmt.Fprint(tw, "-\t")
			case c == "devices":
				fmt.Fprint(tw, strings.ReplaceAll(joinList(v), ", ", ",")+"\t")
			default:
				fmt.Fprint(tw, compat.PyStr(v)+"\t")
			}
		}
		fmt.Fprintln(tw, joinList(get(wd, "apps")))
	}
	return tw.Flush()
}

// extraColumns lists gdirty's own worker keys (device placement,
// recycling) that some worker reports, in a fixed order; gunicorn's
// arbiter and a plain gdirty report none, and get gunicorn's table.
func extraColumns(workers []any) []string {
	var out []string
	for _, key := range []string{"devices", "requests", "retiring"} {
		for _, wv := range workers {
			if wd, ok := wv.(*compat.Dict); ok {
				if _, has := wd.Get(key); has {
					out = append(out, key)
					break
				}
			}
		}
	}
	return out
}

func joinList(v any) string {
	items, _ := v.([]any)
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = compat.PyStr(it)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
