package config

import (
	"encoding"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// parse sets v (not a pointer) from raw according to s and reports whether
// it did; on failure it records an error naming n's key and the value.
func (l *loader) parse(n *node, s *schema, v reflect.Value, raw string) bool {
	if s.leaf == leafString {
		v.SetString(raw)
		return true
	}
	text := strings.TrimSpace(raw)
	t := v.Type()
	switch s.leaf {
	case leafBool:
		switch strings.ToLower(text) {
		case "true", "yes", "1":
			v.SetBool(true)
		case "false", "no", "0":
			v.SetBool(false)
		default:
			l.badValue(n, "invalid boolean", raw, "", "")
			return false
		}
	case leafInt:
		i, err := strconv.ParseInt(text, 10, t.Bits())
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				l.badValue(n, "integer", raw, " out of range for "+intRange(t), "")
			} else {
				l.badValue(n, "invalid integer", raw, "", "")
			}
			return false
		}
		v.SetInt(i)
	case leafUint:
		u, err := parseUint(text, t.Bits())
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				l.badValue(n, "integer", raw, " out of range for "+intRange(t), "")
			} else {
				l.badValue(n, "invalid integer", raw, "", "")
			}
			return false
		}
		v.SetUint(u)
	case leafFloat:
		f, err := strconv.ParseFloat(text, t.Bits())
		switch {
		case errors.Is(err, strconv.ErrRange):
			l.badValue(n, "number", raw, " out of range for "+t.Kind().String(), "")
			return false
		case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
			l.badValue(n, "invalid number", raw, "", "")
			return false
		}
		v.SetFloat(f)
	case leafDuration:
		d, hint, ok := parseDuration(text)
		if !ok {
			l.badValue(n, "invalid duration", raw, " ("+hint+")", "")
			return false
		}
		v.SetInt(int64(d))
	case leafText:
		p := reflect.New(t)
		if err := p.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(text)); err != nil {
			l.badValue(n, "invalid "+t.String(), raw, "", err.Error())
			return false
		}
		v.Set(p.Elem())
	}
	return true
}

// parseUint is strconv.ParseUint with an optional "+" and with negative
// numbers reported as out of range rather than as bad syntax.
func parseUint(s string, bits int) (uint64, error) {
	if strings.HasPrefix(s, "-") {
		i, err := strconv.ParseInt(s, 10, 64)
		switch {
		case err == nil && i == 0:
			return 0, nil
		case err == nil || errors.Is(err, strconv.ErrRange):
			return 0, strconv.ErrRange
		}
		return 0, err
	}
	if rest, ok := strings.CutPrefix(s, "+"); ok {
		if rest == "" || rest[0] < '0' || rest[0] > '9' {
			return 0, strconv.ErrSyntax
		}
		s = rest
	}
	return strconv.ParseUint(s, 10, bits)
}

// badValue records "KEY: what "value"hint: detail", redacting the value and
// dropping the detail (which may echo the value) for secret keys.
func (l *loader) badValue(n *node, what, raw, hint, detail string) {
	shown := strconv.Quote(raw)
	if isSecret(n.key) {
		shown, detail = "<redacted>", ""
	}
	msg := what + " " + shown + hint
	if detail != "" {
		msg += ": " + detail
	}
	l.errorf(n, n.key, "%s", msg)
}

// isSecret reports whether key's last name segment (list indexes skipped)
// contains SECRET, PASSWORD or TOKEN.
func isSecret(key string) bool {
	segs := strings.Split(strings.ToUpper(key), sep)
	for i := len(segs) - 1; i >= 0; i-- {
		if isIndex(segs[i]) {
			continue
		}
		s := segs[i]
		return strings.Contains(s, "SECRET") || strings.Contains(s, "PASSWORD") || strings.Contains(s, "TOKEN")
	}
	return false
}

// intRange describes the range of integer type t, e.g. "int8 (-128..127)".
func intRange(t reflect.Type) string {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		lo := int64(-1) << (bits - 1)
		hi := int64(uint64(1)<<(bits-1) - 1)
		return t.Kind().String() + " (" + strconv.FormatInt(lo, 10) + ".." + strconv.FormatInt(hi, 10) + ")"
	default:
		hi := uint64(math.MaxUint64) >> (64 - bits)
		return t.Kind().String() + " (0.." + strconv.FormatUint(hi, 10) + ")"
	}
}

const durationHint = "want Go syntax like 30s or 1h30m, or hh:mm:ss"

// parseDuration accepts Go duration syntax and the .NET TimeSpan form
// [-][d.]hh:mm[:ss[.fffffffff]]. A bare number other than 0 is refused: it
// has no unit, and .NET would read it as days.
func parseDuration(s string) (time.Duration, string, bool) {
	if strings.Contains(s, ":") {
		d, ok := parseTimeSpan(s)
		if !ok {
			return 0, "want hh:mm:ss with hours 0-23, minutes and seconds 0-59; days as d.hh:mm:ss", false
		}
		return d, "", true
	}
	if digits := strings.TrimLeft(s, "+-"); digits != "" && strings.Trim(digits, "0123456789") == "" && strings.Trim(digits, "0") != "" {
		return 0, "missing unit: write e.g. 30s or 00:00:30", false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, durationHint, false
	}
	return d, "", true
}

func parseTimeSpan(s string) (time.Duration, bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, false
	}
	var days int64
	if d, h, ok := strings.Cut(parts[0], "."); ok {
		n, ok := digits(d, 1, 6)
		if !ok {
			return 0, false
		}
		days, parts[0] = n, h
	}
	hh, ok1 := digits(parts[0], 1, 2)
	mm, ok2 := digits(parts[1], 1, 2)
	if !ok1 || !ok2 || hh > 23 || mm > 59 {
		return 0, false
	}
	var ss, frac int64
	if len(parts) == 3 {
		sec, f, hasFrac := strings.Cut(parts[2], ".")
		var ok bool
		if ss, ok = digits(sec, 1, 2); !ok || ss > 59 {
			return 0, false
		}
		if hasFrac {
			if frac, ok = digits(f, 1, 9); !ok {
				return 0, false
			}
			for i := len(f); i < 9; i++ {
				frac *= 10
			}
		}
	}
	const maxDays = math.MaxInt64 / int64(24*time.Hour)
	if days > maxDays {
		return 0, false
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(hh)*time.Hour +
		time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second + time.Duration(frac)
	if d < 0 { // overflow past the last whole day
		return 0, false
	}
	if neg {
		d = -d
	}
	return d, true
}

// digits parses s as between lo and hi ASCII digits.
func digits(s string, lo, hi int) (int64, bool) {
	if len(s) < lo || len(s) > hi {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}
