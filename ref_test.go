package servicelive_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/decnet/servicelive"
)

// nameCase is one row of TestNames: the expected verdict of each validator.
type nameCase struct {
	name                     string
	decky, service, topology bool
}

func TestNames(t *testing.T) {
	r := strings.Repeat
	tests := []nameCase{
		// plain names
		{"a", true, true, true},
		{"0", true, true, true},
		{"web1", true, true, true},
		{"web-1", true, true, true},
		{"1web", true, true, true},
		{"a-", true, true, true},
		{"a--b", true, true, true},
		{"9-9", true, true, true},
		// length boundaries
		{r("a", 63), true, true, true},
		{r("a", 64), false, false, true},
		{r("a", 65), false, false, false},
		{"a" + r("-", 62), true, true, true},
		{"a" + r("-", 63), false, false, true},
		{"A" + r("b", 63), false, false, true},
		{"A" + r("b", 64), false, false, false},
		{r("0", 63), true, true, true},
		{r("0", 64), false, false, true},
		// case: uppercase only in topology IDs
		{"A", false, false, true},
		{"Web1", false, false, true},
		{"web1A", false, false, true},
		{"LAB-01", false, false, true},
		// underscores only in services, never first
		{"a_b", false, true, false},
		{"smb_v2", false, true, false},
		{"a_", false, true, false},
		{"_a", false, false, false},
		{"_", false, false, false},
		{"a" + r("_", 62), false, true, false},
		{"a" + r("_", 63), false, false, false},
		// first character
		{"", false, false, false},
		{"-", false, false, false},
		{"-a", false, false, false},
		{"--", false, false, false},
		// path and traversal
		{".", false, false, false},
		{"..", false, false, false},
		{"a.b", false, false, false},
		{".a", false, false, false},
		{"a.", false, false, false},
		{"a/b", false, false, false},
		{"/a", false, false, false},
		{"a/", false, false, false},
		{"../x", false, false, false},
		{"x/../y", false, false, false},
		{`a\b`, false, false, false},
		{`..\x`, false, false, false},
		{"~", false, false, false},
		{"a~", false, false, false},
		// whitespace and control characters
		{"a b", false, false, false},
		{" a", false, false, false},
		{"a ", false, false, false},
		{"a\n", false, false, false},
		{"a\r", false, false, false},
		{"\na", false, false, false},
		{"a\tb", false, false, false},
		{"a\x00", false, false, false},
		{"\x00", false, false, false},
		{"a\x7f", false, false, false},
		// NATS and shell metacharacters
		{"a*", false, false, false},
		{"*", false, false, false},
		{">", false, false, false},
		{"a>", false, false, false},
		{"a:b", false, false, false},
		{"a;b", false, false, false},
		{"$(id)", false, false, false},
		{"`id`", false, false, false},
		{"a|b", false, false, false},
		{"a&b", false, false, false},
		{"a'b", false, false, false},
		{`a"b`, false, false, false},
		{"a=b", false, false, false},
		{"a@b", false, false, false},
		{"a+b", false, false, false},
		{"a%2fb", false, false, false},
		// unicode
		{"wéb1", false, false, false},
		{"ａ", false, false, false}, // fullwidth a
		{"web\u00a01", false, false, false},
		{"web\u200b1", false, false, false}, // zero-width space
		{"web\u2028", false, false, false},
		{"Κ", false, false, false}, // Greek capital kappa
		{"K", false, false, true},
		{"\u212a", false, false, false}, // Kelvin sign, folds to k
		{"web1\xff", false, false, false},
		{"ß", false, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			if got := servicelive.ValidDeckyName(tt.name); got != tt.decky {
				t.Errorf("ValidDeckyName(%q) = %v, want %v", tt.name, got, tt.decky)
			}
			if got := servicelive.ValidServiceName(tt.name); got != tt.service {
				t.Errorf("ValidServiceName(%q) = %v, want %v", tt.name, got, tt.service)
			}
			if got := servicelive.ValidTopologyID(tt.name); got != tt.topology {
				t.Errorf("ValidTopologyID(%q) = %v, want %v", tt.name, got, tt.topology)
			}
			// The oracles below must agree with the table too.
			if got := refNameValid(tt.name, 63, false, false); got != tt.decky {
				t.Errorf("decky oracle(%q) = %v, want %v (the oracle is wrong)", tt.name, got, tt.decky)
			}
			if got := refNameValid(tt.name, 63, false, true); got != tt.service {
				t.Errorf("service oracle(%q) = %v, want %v (the oracle is wrong)", tt.name, got, tt.service)
			}
			if got := refNameValid(tt.name, 64, true, false); got != tt.topology {
				t.Errorf("topology oracle(%q) = %v, want %v (the oracle is wrong)", tt.name, got, tt.topology)
			}
		})
	}
}

// refNameValid is a byte-by-byte oracle for the naming regexes: a first
// character in [a-z0-9] (plus [A-Z] when upper), then up to maxLen-1 of the
// same plus '-' (and '_' when underscore).
func refNameValid(s string, maxLen int, upper, underscore bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case upper && c >= 'A' && c <= 'Z':
		case i > 0 && c == '-':
		case i > 0 && underscore && c == '_':
		default:
			return false
		}
	}
	return true
}

func TestRef(t *testing.T) {
	tests := []struct {
		ref  servicelive.Ref
		want servicelive.Ref
		str  string
	}{
		{servicelive.FleetDecky("web1"), servicelive.Ref{Decky: "web1"}, "fleet/web1"},
		{servicelive.FleetDecky("a"), servicelive.Ref{Decky: "a"}, "fleet/a"},
		{servicelive.TopologyDecky("lab", "web1"), servicelive.Ref{Topology: "lab", Decky: "web1"}, "topology/lab/web1"},
		{servicelive.TopologyDecky("LAB-01", "db-2"), servicelive.Ref{Topology: "LAB-01", Decky: "db-2"}, "topology/LAB-01/db-2"},
		// A topology of "" is the fleet.
		{servicelive.TopologyDecky("", "web1"), servicelive.Ref{Decky: "web1"}, "fleet/web1"},
		// The zero Ref.
		{servicelive.Ref{}, servicelive.Ref{}, "fleet/"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			if tt.ref != tt.want {
				t.Errorf("ref = %#v, want %#v", tt.ref, tt.want)
			}
			if got := tt.ref.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			if got := fmt.Sprint(tt.ref); got != tt.str {
				t.Errorf("fmt.Sprint = %q, want %q (Ref is a fmt.Stringer)", got, tt.str)
			}
		})
	}
	if servicelive.FleetDecky("web1") == servicelive.TopologyDecky("x", "web1") {
		t.Error("a fleet decky equals a topology decky of the same name")
	}
	if servicelive.TopologyDecky("lab", "web1") == servicelive.TopologyDecky("LAB", "web1") {
		t.Error("topology IDs differing in case give equal Refs")
	}
}

// FuzzNames checks, for any string, that each validator accepts exactly what
// its regex describes and that anything accepted is safe as a file name, a
// path element, a NATS token and a compose/container name.
func FuzzNames(f *testing.F) {
	for _, s := range []string{
		"", "a", "web1", "A", "a_b", "-a", "_a", "a-", "a.b", ".", "..", "../x", "a/b", `a\b`,
		"a b", "a\n", "a\x00", "*", ">", "wéb1", "\u212a", strings.Repeat("a", 63),
		strings.Repeat("a", 64), strings.Repeat("A", 64), strings.Repeat("a", 65),
		"$(id)", "a:b", "a;b", "web\u00a01", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		decky := servicelive.ValidDeckyName(s)
		service := servicelive.ValidServiceName(s)
		topology := servicelive.ValidTopologyID(s)

		if want := refNameValid(s, 63, false, false); decky != want {
			t.Errorf("ValidDeckyName(%q) = %v, oracle %v", s, decky, want)
		}
		if want := refNameValid(s, 63, false, true); service != want {
			t.Errorf("ValidServiceName(%q) = %v, oracle %v", s, service, want)
		}
		if want := refNameValid(s, 64, true, false); topology != want {
			t.Errorf("ValidTopologyID(%q) = %v, oracle %v", s, topology, want)
		}
		// Every decky name is also a valid service name and topology ID.
		if decky && (!service || !topology) {
			t.Errorf("%q: a decky name but service %v topology %v", s, service, topology)
		}
		if decky {
			checkSafeName(t, "decky", s, 63)
			if strings.ContainsAny(s, "_ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("decky name %q has an underscore or uppercase letter", s)
			}
			// Its event topics are valid NATS subjects.
			for _, topic := range []string{"decky." + s + ".service_added", "decky." + s + ".service_removed"} {
				if !servicelive.ValidTopic(topic) {
					t.Errorf("topic %q of decky %q is not valid", topic, s)
				}
			}
		}
		if service {
			checkSafeName(t, "service", s, 63)
			if strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				t.Errorf("service name %q has an uppercase letter", s)
			}
		}
		if topology {
			checkSafeName(t, "topology", s, 64)
			if strings.Contains(s, "_") {
				t.Errorf("topology ID %q has an underscore", s)
			}
		}
		if decky && service {
			// The compose key of a decky service is itself a safe name.
			key := s + "-" + s
			if len(key) <= 63 && !servicelive.ValidServiceName(key) {
				t.Errorf("compose key %q is not a valid name", key)
			}
		}
	})
}

// checkSafeName asserts the properties every valid name has.
func checkSafeName(t *testing.T, kind, s string, maxLen int) {
	t.Helper()
	if s == "" || len(s) > maxLen {
		t.Errorf("%s name %q: length %d not in [1, %d]", kind, s, len(s), maxLen)
	}
	if strings.ContainsAny(s, "/\\.*> \t\r\n\x00:;$`'\"|&~") || strings.Contains(s, "..") {
		t.Errorf("%s name %q contains a path, NATS or shell metacharacter", kind, s)
	}
	for _, r := range s {
		if r > 0x7e || r < 0x21 {
			t.Errorf("%s name %q contains a non-printable or non-ASCII rune %U", kind, s, r)
		}
	}
	if s[0] == '-' || s[0] == '_' {
		t.Errorf("%s name %q starts with %q (reads as a flag)", kind, s, s[0])
	}
	if filepath.Base(s) != s || filepath.Clean(s) != s || filepath.IsAbs(s) || !filepath.IsLocal(s) {
		t.Errorf("%s name %q is not a plain local file name", kind, s)
	}
	if !servicelive.ValidTopic(s) {
		t.Errorf("%s name %q is not a valid NATS token", kind, s)
	}
}
