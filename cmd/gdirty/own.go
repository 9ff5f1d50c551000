package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/gdirty/gdirty/compat"
	"github.com/gdirty/gdirty/worker"
)

// gdirty's own settings that gunicorn does not have (recycling, device
// placement). Each is read, in increasing priority, from gunicorn.conf.py
// as gdirty_NAME (gunicorn ignores names it does not know), from the
// gdirty TOML as NAME, and from the flag --NAME (underscores as dashes,
// or its GDIRTY_NAME environment variable).
var ownKeys = []struct{ key, usage string }{
	{"max_requests", "recycle a worker after this many calls (0: never), as gunicorn's max_requests"},
	{"max_requests_jitter", "add a random 0..N to each worker's max_requests"},
	{"max_worker_memory", "recycle a worker whose process tree's resident memory exceeds this (bytes, or 512MB, 2GiB; 0: no bound)"},
	{"worker_ttl", "recycle a worker after this many seconds (0: never)"},
	{"worker_idle_ttl", "recycle a worker that got no call for this many seconds (0: never)"},
	{"devices", "accelerator ids to place on workers (0,1,2,3), or a count (4 means 0..3)"},
	{"devices_per_worker", "devices each worker owns (default 1)"},
	{"devices_env", "variable that carries a worker's devices (default " + worker.DefaultDevicesEnv + ")"},
	{"devices_shared", "let more workers than device groups start, sharing devices"},
}

// ownPrefix marks gdirty's names in gunicorn.conf.py.
const ownPrefix = "gdirty_"

func ownFlagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

func ownFlags() []cli.Flag {
	flags := make([]cli.Flag, 0, len(ownKeys))
	for _, k := range ownKeys {
		name := ownFlagName(k.key)
		env := []string{"GDIRTY_" + strings.ToUpper(k.key)}
		usage := k.usage + " [gunicorn.conf.py: " + ownPrefix + k.key + "]"
		if k.key == "devices_shared" {
			flags = append(flags, &cli.BoolFlag{Name: name, EnvVars: env, Usage: usage})
			continue
		}
		flags = append(flags, &cli.StringFlag{Name: name, EnvVars: env, Usage: usage})
	}
	return flags
}

// ownTOML are the same settings in the gdirty TOML (embedded in options,
// so unknown keys are still refused there).
type ownTOML struct {
	MaxRequests       any `toml:"max_requests"`
	MaxRequestsJitter any `toml:"max_requests_jitter"`
	MaxWorkerMemory   any `toml:"max_worker_memory"`
	WorkerTTL         any `toml:"worker_ttl"`
	WorkerIdleTTL     any `toml:"worker_idle_ttl"`
	Devices           any `toml:"devices"`
	DevicesPerWorker  any `toml:"devices_per_worker"`
	DevicesEnv        any `toml:"devices_env"`
	DevicesShared     any `toml:"devices_shared"`
}

func (t ownTOML) values() map[string]any {
	all := map[string]any{
		"max_requests": t.MaxRequests, "max_requests_jitter": t.MaxRequestsJitter,
		"max_worker_memory": t.MaxWorkerMemory, "worker_ttl": t.WorkerTTL, "worker_idle_ttl": t.WorkerIdleTTL,
		"devices": t.Devices, "devices_per_worker": t.DevicesPerWorker, "devices_env": t.DevicesEnv,
		"devices_shared": t.DevicesShared,
	}
	out := map[string]any{}
	for k, v := range all {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

// ownSettings are the resolved settings.
type ownSettings struct {
	Recycle worker.RecyclePolicy
	Devices *worker.DevicePlan // nil: no placement
	// Warnings are worth logging but do not stop gdirty.
	Warnings []string
}

// layer is one source of values; where names a key in its error messages.
type layer struct {
	values map[string]any
	where  func(key string) string
}

type ownSources []layer

// get returns the value of key from the highest-priority source that sets
// it, and how to name it in an error.
func (s ownSources) get(key string) (any, string, bool) {
	for _, l := range s {
		if v, ok := l.values[key]; ok && v != nil {
			return v, l.where(key), true
		}
	}
	return nil, "", false
}

// resolveOwn reads gdirty's own settings from flags, the TOML and the
// gunicorn config's gdirty_* names, and checks them. Errors are one line
// naming the setting and where it was set.
func resolveOwn(c *cli.Context, o *options, settings *compat.Settings, conf confLayer) (*ownSettings, error) {
	flags := map[string]any{}
	for _, k := range ownKeys {
		name := ownFlagName(k.key)
		if !c.IsSet(name) {
			continue
		}
		if k.key == "devices_shared" {
			flags[k.key] = c.Bool(name)
		} else {
			flags[k.key] = c.String(name)
		}
	}
	src := ownSources{
		{values: flags, where: func(k string) string { return "--" + ownFlagName(k) }},
		{values: o.ownTOML.values(), where: func(k string) string { return fmt.Sprintf("%s: %s", o.GdirtyConfig, k) }},
		{values: conf.values, where: func(k string) string { return fmt.Sprintf("%s: %s%s", conf.path, ownPrefix, k) }},
	}
	own, err := parseOwn(src, settings.DirtyWorkers, settings.Env)
	if err != nil {
		return nil, err
	}
	own.Warnings = append(append([]string(nil), conf.warnings...), own.Warnings...)
	return own, nil
}

// confLayer is gunicorn.conf.py's gdirty_* values (keys without the
// prefix), its path for messages, and warnings about names not known.
type confLayer struct {
	values   map[string]any
	path     string
	warnings []string
}

// readConf decodes the gdirty_* names the config loader found (own
// settings and cluster settings).
func readConf(o *options, settings *compat.Settings) (confLayer, error) {
	path := settings.Config
	if path == "" {
		path = o.Config
	}
	values, warnings, err := confValues(settings.Gdirty, path)
	if err != nil {
		return confLayer{}, err
	}
	return confLayer{values: values, path: path, warnings: warnings}, nil
}

// confValues decodes the config loader's gdirty_* values; names gdirty
// does not know are reported as warnings (a typo must not pass silently).
func confValues(raw map[string]json.RawMessage, path string) (map[string]any, []string, error) {
	known := map[string]bool{}
	for _, k := range ownKeys {
		known[k.key] = true
	}
	for _, k := range clusterKeys() {
		known[k] = true
	}
	out := map[string]any{}
	var warnings []string
	names := make([]string, 0, len(raw))
	for name := range raw {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := strings.TrimPrefix(name, ownPrefix)
		if !known[key] {
			warnings = append(warnings, fmt.Sprintf("%s: unknown gdirty setting %s (ignored)", path, name))
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(raw[name]))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, &usageError{msg: fmt.Sprintf("%s: %s: cannot read its value: %v", path, name, err)}
		}
		out[key] = v
	}
	return out, warnings, nil
}

func parseOwn(src ownSources, workers int, env map[string]string) (*ownSettings, error) {
	own := &ownSettings{}
	bad := func(where string, v any, why string) error {
		return &usageError{msg: fmt.Sprintf("%s = %s: %s", where, showValue(v), why)}
	}
	count := func(key string, dst *int64) error {
		v, where, ok := src.get(key)
		if !ok {
			return nil
		}
		n, err := asInt(v)
		if err != nil || n < 0 {
			return bad(where, v, "must be a whole number >= 0")
		}
		*dst = n
		return nil
	}
	seconds := func(key string, dst *time.Duration) error {
		v, where, ok := src.get(key)
		if !ok {
			return nil
		}
		d, err := asSeconds(v)
		if err != nil {
			return bad(where, v, err.Error())
		}
		*dst = d
		return nil
	}
	r := &own.Recycle
	if err := count("max_requests", &r.MaxRequests); err != nil {
		return nil, err
	}
	if err := count("max_requests_jitter", &r.MaxRequestsJitter); err != nil {
		return nil, err
	}
	if v, where, ok := src.get("max_worker_memory"); ok {
		n, err := asBytes(v)
		if err != nil {
			return nil, bad(where, v, err.Error())
		}
		r.MaxMemory = n
		if n > 0 {
			if _, err := os.Stat("/proc/self/stat"); err != nil {
				return nil, bad(where, v, "measuring worker memory needs /proc (Linux)")
			}
		}
	}
	if err := seconds("worker_ttl", &r.TTL); err != nil {
		return nil, err
	}
	if err := seconds("worker_idle_ttl", &r.IdleTTL); err != nil {
		return nil, err
	}
	if r.MaxRequestsJitter > 0 && r.MaxRequests == 0 {
		own.Warnings = append(own.Warnings, "max_requests_jitter is set without max_requests: no effect")
	}
	plan, err := parseDevices(src, workers, env, bad)
	if err != nil {
		return nil, err
	}
	own.Devices = plan
	return own, nil
}

func parseDevices(src ownSources, workers int, env map[string]string, bad func(string, any, string) error) (*worker.DevicePlan, error) {
	v, where, ok := src.get("devices")
	if !ok {
		for _, k := range []string{"devices_per_worker", "devices_env", "devices_shared"} {
			if v, w, set := src.get(k); set {
				return nil, bad(w, v, "needs devices to be set too")
			}
		}
		return nil, nil
	}
	ids, err := asDevices(v)
	if err != nil {
		return nil, bad(where, v, err.Error())
	}
	plan := &worker.DevicePlan{IDs: ids, PerWorker: 1, Env: worker.DefaultDevicesEnv}
	if pv, pw, set := src.get("devices_per_worker"); set {
		n, err := asInt(pv)
		if err != nil || n < 1 || n > int64(len(ids)) {
			return nil, bad(pw, pv, fmt.Sprintf("must be a whole number from 1 to the %d devices given", len(ids)))
		}
		plan.PerWorker = int(n)
	}
	if ev, ew, set := src.get("devices_env"); set {
		s, isStr := ev.(string)
		if !isStr {
			return nil, bad(ew, ev, "must be an environment variable name")
		}
		plan.Env = s
	}
	if sv, sw, set := src.get("devices_shared"); set {
		b, err := asBool(sv)
		if err != nil {
			return nil, bad(sw, sv, err.Error())
		}
		plan.Shared = b
	}
	if err := plan.Check(workers); err != nil {
		return nil, &usageError{msg: fmt.Sprintf("%s: %v", where, err)}
	}
	if _, clash := env[plan.Env]; clash {
		return nil, &usageError{msg: fmt.Sprintf("%s: the config's env/raw_env sets %s too, which gdirty sets per worker; remove one", where, plan.Env)}
	}
	return plan, nil
}

// showValue renders a setting's value in an error message.
func showValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = showValue(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		return fmt.Sprint(x)
	}
}

// asInt accepts integers from any source (JSON, TOML, flag text); never
// booleans or fractions.
func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case json.Number:
		return x.Int64()
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	default:
		return 0, fmt.Errorf("not an integer")
	}
}

func asFloat(v any) (float64, error) {
	switch x := v.(type) {
	case int64:
		return float64(x), nil
	case float64:
		return x, nil
	case json.Number:
		return x.Float64()
	case string:
		return strconv.ParseFloat(strings.TrimSpace(x), 64)
	default:
		return 0, fmt.Errorf("not a number")
	}
}

// asSeconds reads seconds (a number, as gunicorn's timeouts) or a Go
// duration string ("90s", "12h").
func asSeconds(v any) (time.Duration, error) {
	f, err := asFloat(v)
	if err != nil {
		s, isStr := v.(string)
		if !isStr {
			return 0, fmt.Errorf("must be a number of seconds")
		}
		d, derr := time.ParseDuration(strings.TrimSpace(s))
		if derr != nil {
			return 0, fmt.Errorf("must be a number of seconds or a duration such as 90s or 12h")
		}
		f = d.Seconds()
	}
	if math.IsNaN(f) || f < 0 {
		return 0, fmt.Errorf("must be >= 0 seconds")
	}
	if f > 100*365*24*3600 {
		return 0, fmt.Errorf("more than 100 years")
	}
	return time.Duration(f * float64(time.Second)), nil
}

var sizeText = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)$`)

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// asBytes reads a byte count: an integer, or a string with a unit
// ("512MB" = 512*10^6, "2GiB" = 2*2^30). A bare "2G" is refused: it
// means GB to some and GiB to others.
func asBytes(v any) (int64, error) {
	if s, isStr := v.(string); isStr {
		m := sizeText.FindStringSubmatch(strings.TrimSpace(s))
		if m == nil {
			return 0, fmt.Errorf("must be bytes or a size such as 512MB or 2GiB")
		}
		mult, known := sizeUnits[strings.ToLower(m[2])]
		if !known {
			return 0, fmt.Errorf("unknown unit %q: use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)", m[2])
		}
		f, err := strconv.ParseFloat(m[1], 64)
		if err != nil || f*mult >= math.MaxInt64 {
			return 0, fmt.Errorf("too large")
		}
		return int64(math.Round(f * mult)), nil
	}
	n, err := asInt(v)
	if err != nil {
		return 0, fmt.Errorf("must be bytes or a size such as 512MB or 2GiB")
	}
	if n < 0 {
		return 0, fmt.Errorf("must be >= 0")
	}
	return n, nil
}

// maxDevices bounds a device count, so a typo cannot allocate millions.
const maxDevices = 4096

// asDevices reads device ids: a list (of strings or integers), a count N
// (ids 0..N-1), or a string holding either ("4", "0,1,2,3").
func asDevices(v any) ([]string, error) {
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.Atoi(s); err == nil {
			return deviceCount(int64(n))
		}
		for _, part := range strings.Split(s, ",") {
			list = append(list, strings.TrimSpace(part))
		}
	default:
		n, err := asInt(v)
		if err != nil {
			return nil, fmt.Errorf("must be a list of device ids or a count")
		}
		return deviceCount(n)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("no devices given")
	}
	if len(list) > maxDevices {
		return nil, fmt.Errorf("more than %d devices", maxDevices)
	}
	ids := make([]string, 0, len(list))
	for _, e := range list {
		switch x := e.(type) {
		case string:
			ids = append(ids, x)
		case int64, json.Number:
			n, err := asInt(x)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("device id %s is not a string or a whole number >= 0", showValue(e))
			}
			ids = append(ids, strconv.FormatInt(n, 10))
		default:
			return nil, fmt.Errorf("device id %s is not a string or a whole number", showValue(e))
		}
	}
	return ids, nil
}

func deviceCount(n int64) ([]string, error) {
	if n < 1 || n > maxDevices {
		return nil, fmt.Errorf("a device count must be from 1 to %d", maxDevices)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return ids, nil
}

func asBool(v any) (bool, error) {
	switch x := v.(type) {
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "yes", "1", "on":
			return true, nil
		case "false", "no", "0", "off":
			return false, nil
		}
	}
	return false, fmt.Errorf("must be true or false")
}

// logSummary says at start-up which recycling rules and placement apply.
func (o *ownSettings) logSummary(log logrus.FieldLogger) {
	r := o.Recycle
	var rules []string
	if r.MaxRequests > 0 {
		rules = append(rules, fmt.Sprintf("max_requests %d (+0..%d)", r.MaxRequests, r.MaxRequestsJitter))
	}
	if r.MaxMemory > 0 {
		rules = append(rules, "max_worker_memory "+worker.FormatBytes(r.MaxMemory))
	}
	if r.TTL > 0 {
		rules = append(rules, "worker_ttl "+r.TTL.String())
	}
	if r.IdleTTL > 0 {
		rules = append(rules, "worker_idle_ttl "+r.IdleTTL.String())
	}
	if len(rules) > 0 {
		log.Infof("Recycling dirty workers on: %s", strings.Join(rules, ", "))
	}
	if d := o.Devices; d != nil {
		shared := ""
		if d.Shared {
			shared = ", shared"
		}
		log.Infof("Devices %s: %d per worker through %s%s", strings.Join(d.IDs, ","), d.PerWorker, d.Env, shared)
	}
}
