package servicelive_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/decnet/servicelive"
)

// validateService is the fixed service the Validate tests and FuzzValidate
// run against: one field of every type.
var validateService = servicelive.Service{
	Name:  "ssh",
	Image: "decnet/ssh:latest",
	Schema: []servicelive.Field{
		{Key: "banner", Type: servicelive.FieldString},
		{Key: "password", Type: servicelive.FieldPassword, Secret: true},
		{Key: "motd", Type: servicelive.FieldText},
		{Key: "port", Type: servicelive.FieldInt},
		{Key: "root_login", Type: servicelive.FieldBool},
		{Key: "level", Type: servicelive.FieldEnum, Enum: []string{"low", "medium", "high", "3"}},
		{Key: "ciphers", Type: servicelive.FieldMultiEnum, Enum: []string{"aes128", "aes256", "chacha20"}},
	},
}

// validateServiceKeys are the schema keys of validateService.
var validateServiceKeys = func() map[string]servicelive.FieldType {
	m := make(map[string]servicelive.FieldType)
	for _, f := range validateService.Schema {
		m[f.Key] = f.Type
	}
	return m
}()

// stringerValue is a fmt.Stringer that is not a number: not a scalar.
type stringerValue struct{}

func (stringerValue) String() string { return "stringer" }

func TestValidateDropsAndEmpty(t *testing.T) {
	tests := []struct {
		name string
		cfg  servicelive.Config
		want servicelive.Config
	}{
		{"nil config", nil, nil},
		{"empty config", servicelive.Config{}, nil},
		{"only unknown keys", servicelive.Config{"nope": "x", "Port": 22, "": "y"}, nil},
		{"only nil values", servicelive.Config{"banner": nil, "port": nil, "ciphers": nil}, nil},
		{"only empty strings", servicelive.Config{"banner": "", "port": "", "root_login": "", "level": "", "ciphers": ""}, nil},
		{"unknown dropped, known kept",
			servicelive.Config{"banner": "hi", "nope": 1, "PORT": 2},
			servicelive.Config{"banner": "hi"}},
		{"nil and empty dropped, others kept",
			servicelive.Config{"banner": "", "motd": nil, "port": 22},
			servicelive.Config{"port": 22}},
		{"every field",
			servicelive.Config{
				"banner":     "SSH-2.0-OpenSSH_8.9",
				"password":   "hunter2",
				"motd":       "line1\nline2",
				"port":       2222,
				"root_login": "yes",
				"level":      "high",
				"ciphers":    []string{"aes256", "aes128"},
			},
			servicelive.Config{
				"banner":     "SSH-2.0-OpenSSH_8.9",
				"password":   "hunter2",
				"motd":       "line1\nline2",
				"port":       2222,
				"root_login": true,
				"level":      "high",
				"ciphers":    []string{"aes256", "aes128"},
			}},
		{"whitespace string is kept as is", servicelive.Config{"banner": "  "}, servicelive.Config{"banner": "  "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := validateService.Validate(tt.cfg)
			if err != nil {
				t.Fatalf("Validate(%#v): unexpected error %v", tt.cfg, err)
			}
			if tt.want == nil {
				if got != nil {
					t.Fatalf("Validate(%#v) = %#v, want nil", tt.cfg, got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Validate(%#v) = %#v, want %#v", tt.cfg, got, tt.want)
			}
		})
	}
}

func TestValidateEmptySchema(t *testing.T) {
	s := servicelive.Service{Name: "bare", Image: "bare"}
	got, err := s.Validate(servicelive.Config{"anything": "goes", "port": 1})
	if err != nil || got != nil {
		t.Fatalf("Validate on a service without schema = %#v, %v; want nil, nil", got, err)
	}
}

// TestValidateCoercion checks every value accepted for one key, alone.
func TestValidateCoercion(t *testing.T) {
	tests := []struct {
		key  string
		in   any
		want any
	}{
		// String, Password, Text: any scalar, stringified.
		{"banner", "hello", "hello"},
		{"banner", " padded ", " padded "},
		{"banner", 3, "3"},
		{"banner", -3, "-3"},
		{"banner", int8(-8), "-8"},
		{"banner", int16(16), "16"},
		{"banner", int32(32), "32"},
		{"banner", int64(1) << 40, "1099511627776"},
		{"banner", uint(7), "7"},
		{"banner", uint8(8), "8"},
		{"banner", uint16(16), "16"},
		{"banner", uint32(32), "32"},
		{"banner", uint64(math.MaxUint64), "18446744073709551615"},
		{"banner", 2.5, "2.5"},
		{"banner", 8080.0, "8080"},
		{"banner", 1e21, "1000000000000000000000"},
		{"banner", float32(0.25), "0.25"},
		{"banner", true, "true"},
		{"banner", false, "false"},
		{"banner", json.Number("12.50"), "12.50"},
		{"password", 1234, "1234"},
		{"password", "s3cret", "s3cret"},
		{"password", false, "false"},
		{"motd", 2.5, "2.5"},
		{"motd", true, "true"},
		{"motd", "multi\nline", "multi\nline"},

		// Int: ints, integral floats, decimal strings, json.Number.
		{"port", 22, 22},
		{"port", 0, 0},
		{"port", -1, -1},
		{"port", int8(8), 8},
		{"port", int16(16), 16},
		{"port", int32(32), 32},
		{"port", int64(8080), 8080},
		{"port", uint(9), 9},
		{"port", uint8(9), 9},
		{"port", uint16(65535), 65535},
		{"port", uint32(9), 9},
		{"port", uint64(9), 9},
		{"port", int64(math.MaxInt64), math.MaxInt64},
		{"port", int64(math.MinInt64), math.MinInt64},
		{"port", 8080.0, 8080},
		{"port", -2.0, -2},
		{"port", 0.0, 0},
		{"port", math.Copysign(0, -1), 0},
		{"port", float32(443), 443},
		{"port", 1e15, 1000000000000000},
		{"port", "42", 42},
		{"port", " 7 ", 7},
		{"port", "\t7\n", 7},
		{"port", "-12", -12},
		{"port", "+12", 12},
		{"port", "007", 7},
		{"port", json.Number("42"), 42},
		{"port", json.Number("-42"), -42},

		// Bool.
		{"root_login", true, true},
		{"root_login", false, false},
		{"root_login", "true", true},
		{"root_login", "1", true},
		{"root_login", "yes", true},
		{"root_login", "on", true},
		{"root_login", "false", false},
		{"root_login", "0", false},
		{"root_login", "no", false},
		{"root_login", "off", false},
		{"root_login", "TRUE", true},
		{"root_login", "True", true},
		{"root_login", "YeS", true},
		{"root_login", "ON", true},
		{"root_login", "FALSE", false},
		{"root_login", "No", false},
		{"root_login", "oFf", false},
		{"root_login", " yes ", true},

		// Enum.
		{"level", "low", "low"},
		{"level", "high", "high"},
		{"level", 3, "3"},   // a scalar stringified, then checked
		{"level", 3.0, "3"}, // ditto

		// MultiEnum.
		{"ciphers", []string{"aes128"}, []string{"aes128"}},
		{"ciphers", []string{"chacha20", "aes128"}, []string{"chacha20", "aes128"}},
		{"ciphers", []any{"aes256", "aes128"}, []string{"aes256", "aes128"}},
		{"ciphers", []string{"aes256", "aes128", "aes256", "aes128"}, []string{"aes256", "aes128"}},
		{"ciphers", []any{"chacha20", "chacha20"}, []string{"chacha20"}},
		{"ciphers", []string{"chacha20", "aes256", "aes128", "aes256"}, []string{"chacha20", "aes256", "aes128"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%T(%v)", tt.key, tt.in, tt.in), func(t *testing.T) {
			got, err := validateService.Validate(servicelive.Config{tt.key: tt.in})
			if err != nil {
				t.Fatalf("Validate(%s: %#v): unexpected error %v", tt.key, tt.in, err)
			}
			if len(got) != 1 {
				t.Fatalf("Validate(%s: %#v) = %#v, want exactly key %s", tt.key, tt.in, got, tt.key)
			}
			v := got[tt.key]
			if reflect.TypeOf(v) != reflect.TypeOf(tt.want) || !reflect.DeepEqual(v, tt.want) {
				t.Errorf("Validate(%s: %#v)[%s] = %#v (%T), want %#v (%T)", tt.key, tt.in, tt.key, v, v, tt.want, tt.want)
			}
		})
	}
}

// TestValidateBadValues checks every refused value: one *ConfigError naming
// the service and the key, matching ErrInvalidService only.
func TestValidateBadValues(t *testing.T) {
	tests := []struct {
		key string
		in  any
	}{
		// String, Password, Text: not scalars.
		{"banner", map[string]any{"a": 1}},
		{"banner", []string{"a"}},
		{"banner", []any{"a"}},
		{"banner", struct{}{}},
		{"banner", stringerValue{}},
		{"banner", errors.New("boom")},
		{"password", []string{"hunter2"}},
		{"password", map[string]string{"a": "b"}},
		{"motd", []any{"x", 1}},
		{"motd", &struct{}{}},

		// Int.
		{"port", "3.5"},
		{"port", "eighty"},
		{"port", "1e3"},
		{"port", "0x10"},
		{"port", "1_000"},
		{"port", "22 23"},
		{"port", " "},
		{"port", "99999999999999999999"},
		{"port", 3.5},
		{"port", -0.5},
		{"port", float32(1.5)},
		{"port", math.NaN()},
		{"port", math.Inf(1)},
		{"port", math.Inf(-1)},
		{"port", 1e19},
		{"port", -1e19},
		{"port", uint64(math.MaxUint64)},
		{"port", true},
		{"port", false},
		{"port", json.Number("3.5")},
		{"port", json.Number("eighty")},
		{"port", json.Number("99999999999999999999")},
		{"port", []string{"1"}},
		{"port", map[string]any{}},

		// Bool.
		{"root_login", "maybe"},
		{"root_login", "y"},
		{"root_login", "t"},
		{"root_login", "2"},
		{"root_login", "truee"},
		{"root_login", 2},
		{"root_login", -1},
		{"root_login", 0.5},
		{"root_login", []string{"true"}},
		{"root_login", map[string]any{"true": true}},

		// Enum.
		{"level", "LOW"},
		{"level", "extreme"},
		{"level", " low"},
		{"level", 4},
		{"level", true},
		{"level", []string{"low"}},
		{"level", map[string]any{}},

		// MultiEnum.
		{"ciphers", []string{}},
		{"ciphers", []any{}},
		{"ciphers", []string{"aes128", "des"}},
		{"ciphers", []string{"AES128"}},
		{"ciphers", []string{""}},
		{"ciphers", []any{"aes128", 3}},
		{"ciphers", []any{"aes128", nil}},
		{"ciphers", []any{[]string{"aes128"}}},
		{"ciphers", "aes128"},
		{"ciphers", "aes128,aes256"},
		{"ciphers", 3},
		{"ciphers", true},
		{"ciphers", []int{1}},
		{"ciphers", map[string]any{"aes128": true}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s=%T(%v)", tt.key, tt.in, tt.in), func(t *testing.T) {
			// A valid neighbour must not hide or change the error.
			cfg := servicelive.Config{tt.key: tt.in, "unknown": "x"}
			if tt.key != "banner" {
				cfg["banner"] = "ok"
			}
			got, err := validateService.Validate(cfg)
			if err == nil {
				t.Fatalf("Validate(%s: %#v) = %#v, want an error", tt.key, tt.in, got)
			}
			if got != nil {
				t.Errorf("Validate(%s: %#v) returned %#v with its error, want nil", tt.key, tt.in, got)
			}
			checkConfigError(t, err, validateService.Name, tt.key)
		})
	}
}

// checkConfigError asserts err is a *ConfigError for service and key that
// matches ErrInvalidService and nothing else, with a well-formed message.
func checkConfigError(t *testing.T, err error, service, key string) {
	t.Helper()
	if !errors.Is(err, servicelive.ErrInvalidService) {
		t.Errorf("error %q does not match ErrInvalidService", err)
	}
	if errors.Is(err, servicelive.ErrNotFound) || errors.Is(err, servicelive.ErrConflict) {
		t.Errorf("error %q matches ErrNotFound or ErrConflict", err)
	}
	var ce *servicelive.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %q (%T) is not a *ConfigError", err, err)
	}
	if ce.Service != service || ce.Key != key {
		t.Errorf("ConfigError{Service: %q, Key: %q}, want {%q, %q}", ce.Service, ce.Key, service, key)
	}
	if ce.Reason == "" {
		t.Errorf("ConfigError %q has no Reason", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "servicelive: ") {
		t.Errorf("message %q does not start with %q", msg, "servicelive: ")
	}
	if !strings.Contains(msg, service) || !strings.Contains(msg, key) {
		t.Errorf("message %q does not name service %q and key %q", msg, service, key)
	}
	// Lower case: the part the package writes itself (the reason may quote
	// the caller's value, e.g. NaN, so it is not checked).
	if head := strings.TrimSuffix(msg, ce.Reason); head != strings.ToLower(head) {
		t.Errorf("message %q is not lower case", msg)
	}
	if strings.HasSuffix(msg, ".") || strings.HasSuffix(msg, "\n") {
		t.Errorf("message %q ends with punctuation", msg)
	}
}

// TestValidateFirstBadKeyInSchemaOrder checks that with several bad values
// the error names the first one in schema order, deterministically.
func TestValidateFirstBadKeyInSchemaOrder(t *testing.T) {
	cfg := servicelive.Config{"ciphers": "x", "port": "eighty", "root_login": "maybe"}
	for range 20 {
		_, err := validateService.Validate(cfg)
		checkConfigError(t, err, "ssh", "port")
	}
}

func TestValidateDoesNotAlias(t *testing.T) {
	in := []string{"aes128", "aes256"}
	anyIn := []any{"chacha20"}
	cfg := servicelive.Config{"ciphers": in, "banner": "b"}
	got, err := validateService.Validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in[0], in[1] = "chacha20", "chacha20"
	if want := []string{"aes128", "aes256"}; !reflect.DeepEqual(got["ciphers"], want) {
		t.Errorf("after mutating the input slice, output = %#v, want %#v", got["ciphers"], want)
	}

	// And the other way round: mutating the output leaves the input alone.
	in = []string{"aes128", "aes256"}
	cfg = servicelive.Config{"ciphers": in}
	got, err = validateService.Validate(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got["ciphers"].([]string)[0] = "mutated"
	got["banner"] = "added"
	if in[0] != "aes128" {
		t.Errorf("mutating the output changed the input slice: %v", in)
	}
	if _, ok := cfg["banner"]; ok || len(cfg) != 1 {
		t.Errorf("mutating the output changed the input map: %#v", cfg)
	}

	// []any input too.
	got, err = validateService.Validate(servicelive.Config{"ciphers": anyIn})
	if err != nil {
		t.Fatal(err)
	}
	anyIn[0] = "aes128"
	if want := []string{"chacha20"}; !reflect.DeepEqual(got["ciphers"], want) {
		t.Errorf("after mutating the input []any, output = %#v, want %#v", got["ciphers"], want)
	}
}

func TestValidateDoesNotModifyInput(t *testing.T) {
	cfg := servicelive.Config{"port": "42", "root_login": "yes", "nope": 1, "banner": "", "ciphers": []string{"aes128", "aes128"}}
	want := servicelive.Config{"port": "42", "root_login": "yes", "nope": 1, "banner": "", "ciphers": []string{"aes128", "aes128"}}
	if _, err := validateService.Validate(cfg); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Validate modified its input: %#v, want %#v", cfg, want)
	}
}

// TestValidateJSON runs a config decoded from JSON, the way an HTTP API gets
// it, with and without UseNumber.
func TestValidateJSON(t *testing.T) {
	const body = `{"banner": 42, "port": 8080, "root_login": "on", "level": "low",
		"ciphers": ["aes256", "aes256", "chacha20"], "unknown": {"x": 1}, "motd": null}`
	want := servicelive.Config{
		"banner":     "42",
		"port":       8080,
		"root_login": true,
		"level":      "low",
		"ciphers":    []string{"aes256", "chacha20"},
	}
	for _, useNumber := range []bool{false, true} {
		t.Run(fmt.Sprint("UseNumber=", useNumber), func(t *testing.T) {
			dec := json.NewDecoder(strings.NewReader(body))
			if useNumber {
				dec.UseNumber()
			}
			var cfg servicelive.Config
			if err := dec.Decode(&cfg); err != nil {
				t.Fatal(err)
			}
			got, err := validateService.Validate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Validate(%s) = %#v, want %#v", body, got, want)
			}
		})
	}
}

// TestValidateErrorMessage pins the message format of a ConfigError.
func TestValidateErrorMessage(t *testing.T) {
	_, err := validateService.Validate(servicelive.Config{"port": "eighty"})
	if err == nil {
		t.Fatal("want an error")
	}
	const want = `servicelive: service ssh: config port: "eighty" is not an integer`
	if got := err.Error(); got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

// TestValidateUnknownFieldType: a Service that bypassed the Registry with an
// unknown field type reports a ConfigError instead of panicking or passing
// the value through.
func TestValidateUnknownFieldType(t *testing.T) {
	s := servicelive.Service{Name: "odd", Schema: []servicelive.Field{{Key: "k", Type: "float"}}}
	_, err := s.Validate(servicelive.Config{"k": 1.5})
	if err == nil {
		t.Fatal("want an error for an unknown field type")
	}
	checkConfigError(t, err, "odd", "k")
}

// TestValidateIntOverflowFloat: 2^63 is an integral float64 equal to
// float64(math.MaxInt64) but outside int64; it must be refused, not wrap.
func TestValidateIntOverflowFloat(t *testing.T) {

	for _, in := range []any{math.Exp2(63), float32(math.Exp2(63)), -math.Exp2(64)} {
		got, err := validateService.Validate(servicelive.Config{"port": in})
		if err == nil {
			t.Errorf("Validate(port: %v) = %#v, want an out-of-range error", in, got)
			continue
		}
		checkConfigError(t, err, "ssh", "port")
	}
	// The largest float64 below 2^63 still fits.
	in := math.Nextafter(math.Exp2(63), 0)
	got, err := validateService.Validate(servicelive.Config{"port": in})
	if err != nil {
		t.Fatalf("Validate(port: %v): %v", in, err)
	}
	if want := int(int64(in)); got["port"] != want {
		t.Errorf("Validate(port: %v) = %v, want %v", in, got["port"], want)
	}
	// -2^63 is exactly MinInt64.
	got, err = validateService.Validate(servicelive.Config{"port": -math.Exp2(63)})
	if err != nil || got["port"] != math.MinInt64 {
		t.Errorf("Validate(port: -2^63) = %#v, %v; want MinInt64", got, err)
	}
}

// TestValidateSecretNotInError: a Secret field's value must not be logged, so
// it must not appear in the error a bad value produces.
func TestValidateSecretNotInError(t *testing.T) {

	s := servicelive.Service{Name: "vault", Image: "vault", Schema: []servicelive.Field{
		{Key: "pin", Type: servicelive.FieldInt, Secret: true},
		{Key: "unlock", Type: servicelive.FieldBool, Secret: true},
		{Key: "key", Type: servicelive.FieldEnum, Enum: []string{"a"}, Secret: true},
		{Key: "keys", Type: servicelive.FieldMultiEnum, Enum: []string{"a"}, Secret: true},
		{Key: "pass", Type: servicelive.FieldPassword, Secret: true},
	}}
	const secret = "TopSecret-7731"
	for _, tt := range []struct {
		key string
		in  any
	}{
		{"pin", secret},
		{"unlock", secret},
		{"key", secret},
		{"keys", []string{secret}},
		{"pass", []string{secret}},
	} {
		_, err := s.Validate(servicelive.Config{tt.key: tt.in})
		if err == nil {
			t.Errorf("%s: want an error", tt.key)
			continue
		}
		checkConfigError(t, err, "vault", tt.key)
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error %q leaks the secret value", tt.key, err)
		}
	}
}

// TestValidateJSONNumberIntegralFloat: a JSON number such as 8080.0 is an
// integral float, accepted as float64; decoded with UseNumber it is the
// json.Number "8080.0" and must be accepted the same way.
func TestValidateJSONNumberIntegralFloat(t *testing.T) {

	for _, in := range []json.Number{"8080.0", "8.08e3"} {
		got, err := validateService.Validate(servicelive.Config{"port": in})
		if err != nil || got["port"] != 8080 {
			t.Errorf("Validate(port: json.Number(%q)) = %#v, %v; want 8080", in, got, err)
		}
	}
}

// fuzzValue builds a value of one of many Go types from the fuzzer's inputs.
func fuzzValue(kind uint8, s, s2 string, n int64, x float64, b bool) any {
	switch kind % 20 {
	case 0:
		return s
	case 1:
		return int(n)
	case 2:
		return n
	case 3:
		return uint64(n)
	case 4:
		return x
	case 5:
		return float32(x)
	case 6:
		return b
	case 7:
		if s == "" { // json.Number("") is no JSON number
			return json.Number("0")
		}
		return json.Number(s)
	case 8:
		return []string{s, s2}
	case 9:
		return []any{s, s2}
	case 10:
		return []any{s, n}
	case 11:
		return map[string]any{s: n}
	case 12:
		return nil
	case 13:
		return int8(n)
	case 14:
		return []string{}
	case 15:
		return struct{ S string }{s}
	case 16:
		return []any{s, b}
	case 17:
		return []string{s}
	case 18:
		return fmt.Sprint(n)
	default:
		return strings.Repeat(s, int(uint8(n))%4)
	}
}

// FuzzValidate feeds random keys and values of many types through the fixed
// validateService schema: Validate must never panic, a success holds only
// allowed keys and string, int, bool or non-empty duplicate-free []string
// values and re-validates to itself, and an error is a *ConfigError.
func FuzzValidate(f *testing.F) {
	f.Add("port", uint8(0x30), "42", "x", int64(7), 8080.0, true)
	f.Add("banner", uint8(0x04), "hi", "", int64(0), 2.5, false)
	f.Add("root_login", uint8(0x40), "YES", "", int64(1), 1.0, true)
	f.Add("level", uint8(0x50), "high", "", int64(3), 3.0, false)
	f.Add("ciphers", uint8(0x68), "aes128", "aes128", int64(0), 0.0, false)
	f.Add("ciphers", uint8(0x69), "aes256", "chacha20", int64(0), 0.0, false)
	f.Add("unknown", uint8(0x3b), "", "", int64(-1), math.Inf(1), false)
	f.Add("port", uint8(0x34), "", "", int64(0), math.NaN(), false)
	f.Add("port", uint8(0x37), "1e3", "", int64(0), 1e300, false)
	f.Add("", uint8(0x0c), "", "", int64(0), 0.0, false)
	f.Fuzz(func(t *testing.T, key string, kind uint8, s, s2 string, n int64, x float64, b bool) {
		keys := make([]string, 0, len(validateService.Schema))
		for _, fl := range validateService.Schema {
			keys = append(keys, fl.Key)
		}
		cfg := servicelive.Config{
			keys[int(kind>>4)%len(keys)]: fuzzValue(kind, s, s2, n, x, b),
			key:                          fuzzValue(kind>>2, s2, s, n, x, !b),
		}
		got, err := validateService.Validate(cfg)
		if err != nil {
			if got != nil {
				t.Errorf("Validate returned %#v with error %v", got, err)
			}
			var ce *servicelive.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %q (%T) is not a *ConfigError", err, err)
			}
			if _, known := validateServiceKeys[ce.Key]; !known {
				t.Errorf("ConfigError names key %q, not in the schema", ce.Key)
			}
			if ce.Service != "ssh" || !errors.Is(err, servicelive.ErrInvalidService) ||
				!strings.HasPrefix(err.Error(), "servicelive: service ssh: config "+ce.Key+": ") {
				t.Errorf("bad ConfigError %q (%+v)", err, ce)
			}
			return
		}
		if got != nil && len(got) == 0 {
			t.Error("Validate returned an empty non-nil Config")
		}
		for k, v := range got {
			typ, known := validateServiceKeys[k]
			if !known {
				t.Errorf("result has key %q, not in the schema", k)
				continue
			}
			switch v := v.(type) {
			case string:
				if typ == servicelive.FieldInt || typ == servicelive.FieldBool || typ == servicelive.FieldMultiEnum {
					t.Errorf("%s (%s) = string %q", k, typ, v)
				}
				if typ == servicelive.FieldEnum && !slices.Contains([]string{"low", "medium", "high", "3"}, v) {
					t.Errorf("%s = %q, not one of the enum", k, v)
				}
			case int:
				if typ != servicelive.FieldInt {
					t.Errorf("%s (%s) = int %d", k, typ, v)
				}
			case bool:
				if typ != servicelive.FieldBool {
					t.Errorf("%s (%s) = bool %v", k, typ, v)
				}
			case []string:
				if typ != servicelive.FieldMultiEnum {
					t.Errorf("%s (%s) = []string %q", k, typ, v)
				}
				if len(v) == 0 {
					t.Errorf("%s = empty list", k)
				}
				seen := map[string]bool{}
				for _, e := range v {
					if seen[e] || !slices.Contains([]string{"aes128", "aes256", "chacha20"}, e) {
						t.Errorf("%s = %q: duplicate or not allowed %q", k, v, e)
					}
					seen[e] = true
				}
			default:
				t.Errorf("%s = %#v of type %T, want string, int, bool or []string", k, v, v)
			}
		}
		// A validated Config is a fixed point of Validate.
		again, err := validateService.Validate(got)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("Validate(%#v) = %#v, %v; want it unchanged", got, again, err)
		}
	})
}
