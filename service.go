package servicelive

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/compose-spec/compose-go/v2/types"
)

// FieldType is the type of one configuration field of a service.
type FieldType string

// The field types Service.Validate understands.
const (
	FieldString    FieldType = "string"
	FieldPassword  FieldType = "password"
	FieldInt       FieldType = "int"
	FieldBool      FieldType = "bool"
	FieldText      FieldType = "textarea"
	FieldEnum      FieldType = "enum"
	FieldMultiEnum FieldType = "multi_enum"
)

// Field describes one configuration key of a service.
type Field struct {
	Key    string
	Type   FieldType
	Enum   []string // allowed values for Enum and MultiEnum
	Secret bool     // the value must not be logged
}

// Service describes an emulated honeypot service that can run on a decky.
type Service struct {
	Name           string
	Image          string             // image to run, or
	Build          *types.BuildConfig // a build context
	Ports          []int              // where it listens inside the decky's namespace (metadata; nothing is published)
	FleetSingleton bool               // runs once per fleet, never per decky: AddService refuses it
	Schema         []Field

	// The hardened profile (see OptOut and README "Hardened containers"):
	// every container is read-only, drops every capability and runs with
	// no-new-privileges, a restart policy and limits. These fields say what
	// the service needs beyond that.

	// CapAdd lists the Linux capabilities the service needs ("NET_ADMIN";
	// "CAP_NET_ADMIN" and any case are accepted). NET_BIND_SERVICE is
	// added without asking when one of Ports is below 1024.
	CapAdd []string
	// Writable lists the absolute, clean paths the service writes to; each
	// is a tmpfs of TmpfsSize bytes, beside /tmp (always one).
	Writable []string
	// TmpfsSize is the size in bytes of each tmpfs; 0 = DefaultTmpfsSize.
	TmpfsSize int64
	// PidsLimit caps the container's processes and threads; 0 =
	// DefaultPidsLimit.
	PidsLimit int64
	// MemoryLimit caps the container's memory in bytes, swap included;
	// 0 = DefaultMemoryLimit.
	MemoryLimit int64
	// OptOut leaves chosen settings of the profile to the Compose hook.
	OptOut OptOut

	// Compose, if set, adjusts the rendered compose service (environment from cfg, ...).
	// It must be deterministic and must not keep references to s.
	Compose func(d Decky, cfg Config, s *types.ServiceConfig)
}

// Validate coerces cfg against s.Schema and returns a new Config holding only
// string, int, bool and []string values. Unknown keys and nil or "" values are
// dropped. A bad value is an error that matches ErrInvalidService and is a
// *ConfigError (errors.As). The result is nil when nothing is left.
//
// Coercion: String, Password and Text take any scalar and stringify it; Int
// takes ints, integral floats (JSON numbers) and decimal strings; Bool takes
// bools and true/1/yes/on/false/0/no/off in any case; Enum takes one of Enum;
// MultiEnum takes a non-empty list of allowed values (duplicates removed,
// order kept).
func (s Service) Validate(cfg Config) (Config, error) {
	var out Config
	for _, f := range s.Schema {
		raw, ok := cfg[f.Key]
		if !ok || isEmpty(raw) {
			continue
		}
		v, reason := coerce(f, raw)
		if reason != "" {
			if f.Secret { // the value must not reach logs or responses
				reason = "bad value for a " + string(f.Type) + " field"
			}
			return nil, &ConfigError{Service: s.Name, Key: f.Key, Reason: reason}
		}
		if out == nil {
			out = make(Config, len(s.Schema))
		}
		out[f.Key] = v
	}
	return out, nil
}

// isEmpty reports the values Validate drops: nil, "", an empty JSON number
// and typed nil slices.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []string:
		return x == nil
	case []any:
		return x == nil
	case jsonNumber:
		return x.String() == ""
	}
	return false
}

// coerce converts raw to f's type; a non-empty reason reports a bad value.
func coerce(f Field, raw any) (v any, reason string) {
	switch f.Type {
	case FieldString, FieldPassword, FieldText:
		s, ok := scalarString(raw)
		switch {
		case !ok:
			return nil, fmt.Sprintf("want a scalar, got %T", raw)
		case !utf8.ValidString(s):
			return nil, "not valid UTF-8"
		}
		return s, ""
	case FieldInt:
		return coerceInt(raw)
	case FieldBool:
		return coerceBool(raw)
	case FieldEnum:
		s, ok := scalarString(raw)
		if !ok || !slices.Contains(f.Enum, s) {
			return nil, fmt.Sprintf("%s is not one of %s", quoteValue(raw), strings.Join(f.Enum, ", "))
		}
		return s, ""
	case FieldMultiEnum:
		return coerceMultiEnum(f, raw)
	}
	return nil, fmt.Sprintf("unknown field type %q", f.Type)
}

func coerceInt(raw any) (any, string) {
	switch x := raw.(type) {
	case int:
		return x, ""
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		n, err := strconv.ParseInt(fmt.Sprint(x), 10, strconv.IntSize)
		if err != nil {
			return nil, fmt.Sprintf("%v is out of range", x)
		}
		return int(n), ""
	case float32:
		return floatInt(float64(x))
	case float64:
		return floatInt(x)
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil {
			return nil, fmt.Sprintf("%q is not an integer", x)
		}
		return n, ""
	case jsonNumber:
		if n, err := x.Int64(); err == nil && int64(int(n)) == n {
			return int(n), ""
		}
		if f, err := x.Float64(); err == nil {
			return floatInt(f)
		}
		return nil, fmt.Sprintf("%v is not an integer", x)
	}
	return nil, fmt.Sprintf("want an integer, got %T", raw)
}

// jsonNumber is what encoding/json's Number offers.
type jsonNumber interface {
	Int64() (int64, error)
	Float64() (float64, error)
	String() string
}

func floatInt(f float64) (any, string) {
	if f != math.Trunc(f) || f >= 0x1p63 || f < -0x1p63 { // NaN and ±Inf fail too
		return nil, fmt.Sprintf("%v is not an integer", f)
	}
	return int(f), ""
}

func coerceBool(raw any) (any, string) {
	switch x := raw.(type) {
	case bool:
		return x, ""
	case string:
		switch strings.ToLower(strings.TrimSpace(x)) {
		case "true", "1", "yes", "on":
			return true, ""
		case "false", "0", "no", "off":
			return false, ""
		}
		return nil, fmt.Sprintf("%q is not a boolean", x)
	case jsonNumber:
		return coerceBool(x.String())
	default:
		if n, reason := coerceInt(raw); reason == "" && (n == 0 || n == 1) {
			return n == 1, ""
		}
	}
	return nil, fmt.Sprintf("%s is not a boolean", quoteValue(raw))
}

func coerceMultiEnum(f Field, raw any) (any, string) {
	var in []string
	switch x := raw.(type) {
	case []string:
		in = x
	case []any:
		in = make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Sprintf("want a list of strings, got an element of type %T", e)
			}
			in = append(in, s)
		}
	default:
		return nil, fmt.Sprintf("want a list of strings, got %T", raw)
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		if !slices.Contains(f.Enum, s) {
			return nil, fmt.Sprintf("%q is not one of %s", s, strings.Join(f.Enum, ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, "want at least one value"
	}
	return out, ""
}

// scalarString stringifies a scalar (string, bool, integer or float).
func scalarString(raw any) (string, bool) {
	switch x := raw.(type) {
	case string:
		return x, true
	case bool:
		return strconv.FormatBool(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(x), 'f', -1, 32), true
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), true
	case jsonNumber:
		return x.String(), true
	}
	return "", false
}

func quoteValue(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
}
