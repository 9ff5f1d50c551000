package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// gunicorn's error log format and date format (gunicorn/glogging.py,
// Logger.error_fmt and Logger.datefmt).
const (
	gunicornErrorFmt = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
	gunicornDatefmt  = "[%Y-%m-%d %H:%M:%S %z]"
)

// maxPyWidth bounds field widths and precisions; a longer one is printed
// as literal text.
const maxPyWidth = 1024

// pyRecord holds the LogRecord attributes a format may name.
type pyRecord struct {
	name    string
	levelno int
	message string
	at      time.Time
	pid     int
	start   time.Time // for relativeCreated
}

// pyLevelName is logging.getLevelName for the standard levels.
func pyLevelName(levelno int) string {
	switch levelno {
	case 10:
		return "DEBUG"
	case 20:
		return "INFO"
	case 30:
		return "WARNING"
	case 40:
		return "ERROR"
	case 50:
		return "CRITICAL"
	}
	return "Level " + strconv.Itoa(levelno)
}

// pyField is one "%(key)flags width.prec conv" of a format.
type pyField struct {
	literal string // when key == ""
	key     string
	flags   string
	width   int
	prec    int // -1: none
	conv    byte
}

// pyFormat is a parsed logging.Formatter fmt (PercentStyle).
type pyFormat struct {
	fields  []pyField
	datefmt *string
}

// parsePyFormat parses a %-style logging format. What Python would reject
// is kept as literal text: a log line is never worth failing for.
func parsePyFormat(format string, datefmt *string) *pyFormat {
	f := &pyFormat{datefmt: datefmt}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			f.fields = append(f.fields, pyField{literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		field, n, ok := parsePyField(format[i:])
		if !ok {
			lit.WriteByte(c)
			i++
			continue
		}
		flush()
		f.fields = append(f.fields, field)
		i += n
	}
	flush()
	return f
}

func parsePyField(s string) (pyField, int, bool) {
	// s starts with "%("
	if len(s) < 2 || s[1] != '(' {
		return pyField{}, 0, false
	}
	end := strings.IndexByte(s, ')')
	if end < 0 {
		return pyField{}, 0, false
	}
	fl := pyField{key: s[2:end], prec: -1}
	i := end + 1
	for i < len(s) && strings.IndexByte("-+ #0", s[i]) >= 0 {
		fl.flags += string(s[i])
		i++
	}
	j := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i > j {
		var err error
		if fl.width, err = strconv.Atoi(s[j:i]); err != nil {
			return pyField{}, 0, false
		}
	}
	if i < len(s) && s[i] == '.' {
		i++
		j = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		var err error
		if fl.prec, err = strconv.Atoi(s[j:i]); err != nil {
			return pyField{}, 0, false
		}
	}
	if i >= len(s) || strings.IndexByte("sdirfFeEgGxXoc", s[i]) < 0 {
		return pyField{}, 0, false
	}
	// A width or precision from the user's config never sizes a huge
	// allocation per log line.
	if fl.width > maxPyWidth || fl.prec > maxPyWidth {
		return pyField{}, 0, false
	}
	fl.conv = s[i]
	return fl, i + 1, true
}

// format renders one record as logging.Formatter.format would.
func (f *pyFormat) format(r *pyRecord) string {
	var b strings.Builder
	for _, fl := range f.fields {
		if fl.key == "" {
			b.WriteString(fl.literal)
			continue
		}
		b.WriteString(fl.render(f.value(fl.key, r)))
	}
	return b.String()
}

// value is the record attribute key (a string, int or float).
func (f *pyFormat) value(key string, r *pyRecord) any {
	created := float64(r.at.UnixNano()) / 1e9
	switch key {
	case "asctime":
		return pyAsctime(r.at, f.datefmt)
	case "message", "msg":
		return r.message
	case "levelname":
		return pyLevelName(r.levelno)
	case "levelno":
		return r.levelno
	case "name":
		return r.name
	case "process":
		return r.pid
	case "processName":
		return "MainProcess"
	case "thread":
		return 0
	case "threadName":
		return "MainThread"
	case "created":
		return created
	case "msecs":
		return float64(r.at.Nanosecond()/1e6) + 0.0
	case "relativeCreated":
		return float64(r.at.Sub(r.start).Nanoseconds()) / 1e6
	case "filename", "module", "pathname", "funcName":
		return "gdirty"
	case "lineno":
		return 0
	case "taskName":
		return "None"
	}
	// logging would print a "--- Logging error ---" report; gdirty keeps
	// the line readable instead.
	return "%(" + key + ")"
}

// render applies flags, width, precision and conversion to one value.
func (fl pyField) render(v any) string {
	var s string
	switch fl.conv {
	case 's', 'r':
		switch x := v.(type) {
		case string:
			s = x
			if fl.conv == 'r' {
				s = pyRepr(x)
			}
		case float64:
			s = strconv.FormatFloat(x, 'f', -1, 64)
			if !strings.ContainsAny(s, ".eEn") {
				s += ".0"
			}
		default:
			s = fmt.Sprint(x)
		}
		if fl.prec >= 0 && fl.prec < len(s) {
			s = s[:fl.prec]
		}
	case 'd', 'i':
		s = strconv.FormatInt(pyInt(v), 10)
		s = fl.sign(s)
	case 'x', 'X', 'o':
		base := map[byte]int{'x': 16, 'X': 16, 'o': 8}[fl.conv]
		s = strconv.FormatInt(pyInt(v), base)
		if fl.conv == 'X' {
			s = strings.ToUpper(s)
		}
	case 'f', 'F', 'e', 'E', 'g', 'G':
		prec := fl.prec
		if prec < 0 {
			prec = 6
		}
		s = fl.sign(strconv.FormatFloat(pyFloatOf(v), fl.conv|0x20, prec, 64))
		if fl.conv == 'E' || fl.conv == 'G' {
			s = strings.ToUpper(s)
		}
	case 'c':
		s = fmt.Sprint(v)
	}
	if len(s) >= fl.width {
		return s
	}
	pad := fl.width - len(s)
	switch {
	case strings.Contains(fl.flags, "-"):
		return s + strings.Repeat(" ", pad)
	case strings.Contains(fl.flags, "0") && fl.conv != 's' && fl.conv != 'r':
		if strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			return s[:1] + strings.Repeat("0", pad) + s[1:]
		}
		return strings.Repeat("0", pad) + s
	}
	return strings.Repeat(" ", pad) + s
}

func (fl pyField) sign(s string) string {
	if strings.HasPrefix(s, "-") {
		return s
	}
	if strings.Contains(fl.flags, "+") {
		return "+" + s
	}
	if strings.Contains(fl.flags, " ") {
		return " " + s
	}
	return s
}

func pyInt(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case float64:
		return int64(x)
	}
	return 0
}

func pyFloatOf(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	return 0
}

// pyRepr is repr() of a str, enough for log formats.
func pyRepr(s string) string {
	q := "'"
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		q = `"`
	}
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`, "\r", `\r`, "\t", `\t`, q, `\`+q)
	return q + r.Replace(s) + q
}

// pyAsctime is logging.Formatter.formatTime: time.strftime(datefmt) of
// local time, or "%Y-%m-%d %H:%M:%S,mmm" without a datefmt.
func pyAsctime(t time.Time, datefmt *string) string {
	if datefmt == nil {
		return pyStrftime(t, "%Y-%m-%d %H:%M:%S") + fmt.Sprintf(",%03d", t.Nanosecond()/1e6)
	}
	return pyStrftime(t, *datefmt)
}

// pyStrftime is C strftime for the directives Python's docs list; an
// unknown directive is copied as is (as glibc does).
func pyStrftime(t time.Time, layout string) string {
	var b strings.Builder
	for i := 0; i < len(layout); i++ {
		c := layout[i]
		if c != '%' || i+1 == len(layout) {
			b.WriteByte(c)
			continue
		}
		i++
		switch layout[i] {
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'y':
			fmt.Fprintf(&b, "%02d", t.Year()%100)
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			fmt.Fprintf(&b, "%02d", h)
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'p':
			b.WriteString(t.Format("PM"))
		case 'z':
			b.WriteString(t.Format("-0700"))
		case 'Z':
			b.WriteString(t.Format("MST"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'A':
			b.WriteString(t.Format("Monday"))
		case 'b', 'h':
			b.WriteString(t.Format("Jan"))
		case 'B':
			b.WriteString(t.Format("January"))
		case 'j':
			fmt.Fprintf(&b, "%03d", t.YearDay())
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 's':
			fmt.Fprintf(&b, "%d", t.Unix())
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(layout[i])
		}
	}
	return b.String()
}
