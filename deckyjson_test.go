package servicelive_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/decnet/servicelive"
)

// TestDeckyJSONRoundTrip checks that a decky comes back from its document
// exactly: types of config values, nil apart from empty.
func TestDeckyJSONRoundTrip(t *testing.T) {
	tests := []servicelive.Decky{
		{Name: "web1"},
		{Name: "web1", Services: []string{}, Config: map[string]servicelive.Config{}},
		{Name: "web1", Config: map[string]servicelive.Config{"ssh": nil}},
		{
			Name: "web1", Hostname: "h", IP: "10.0.0.1", Image: "alpine", Network: "n", Host: "engine-a",
			Services: []string{"ssh", "http"},
			Config: map[string]servicelive.Config{"ssh": {
				"port": 22, "big": 1<<62 + 1, "neg": -1, "on": true, "off": false, "banner": "é \"x\" \x00 <b>",
				"users": []string{"root", ""}, "none": []string{}, "nil": []string(nil),
			}},
		},
	}
	for _, d := range tests {
		doc, err := servicelive.MarshalDecky(d)
		if err != nil {
			t.Fatalf("servicelive.MarshalDecky(%#v): %v", d, err)
		}
		got, err := servicelive.UnmarshalDecky(doc)
		if err != nil {
			t.Fatalf("servicelive.UnmarshalDecky(%s): %v", doc, err)
		}
		if !reflect.DeepEqual(got, d) {
			t.Errorf("round trip of\n\t%#v\ngave\n\t%#v\nthrough %s", d, got, doc)
		}
	}
}

// TestDeckyJSONRefuses checks that documents of the wrong shape are errors.
func TestDeckyJSONRefuses(t *testing.T) {
	for _, doc := range []string{
		``, `null x`, `{"name":"a"} {}`, `[]`,
		`{"name":"a","config":{"s":{"k":{"t":"int","v":"22"}}}}`,
		`{"name":"a","config":{"s":{"k":{"t":"int","v":2.5}}}}`,
		`{"name":"a","config":{"s":{"k":{"t":"int","v":99999999999999999999}}}}`,
		`{"name":"a","config":{"s":{"k":{"t":"bool","v":1}}}}`,
		`{"name":"a","config":{"s":{"k":{"t":"[]string","v":[1]}}}}`,
		`{"name":"a","config":{"s":{"k":{"t":"float","v":1}}}}`,
	} {
		if d, err := servicelive.UnmarshalDecky([]byte(doc)); err == nil {
			t.Errorf("servicelive.UnmarshalDecky(%s) = %#v, want an error", doc, d)
		}
	}
	if _, err := servicelive.MarshalDecky(servicelive.Decky{Name: "a", Config: map[string]servicelive.Config{"s": {"k": 1.5}}}); err == nil {
		t.Error("encodeDecky of a float64 value succeeded")
	}
}

// FuzzUnmarshalDecky checks that any document either fails to decode or
// decodes to a decky whose own document decodes to it again.
func FuzzUnmarshalDecky(f *testing.F) {
	for _, seed := range []string{
		`{"name":"web1","services":null,"config":null}`,
		`{"name":"web1","image":"alpine","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22}}}}`,
		`{"name":"a","services":[],"config":{"s":{"u":{"t":"[]string","v":["x",""]},"b":{"t":"bool","v":true},"s":{"t":"string","v":"\u0000"}}}}`,
		`{"name":"a","config":{"s":null}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := servicelive.UnmarshalDecky(doc)
		if err != nil {
			return
		}
		if err := servicelive.CheckUpdate(servicelive.Ref{Decky: d.Name}, d); err != nil {
			return // e.g. invalid UTF-8 JSON let through: the store refuses to write it
		}
		enc, err := servicelive.MarshalDecky(d)
		if err != nil {
			t.Fatalf("encodeDecky of a decoded decky: %v", err)
		}
		again, err := servicelive.UnmarshalDecky(enc)
		if err != nil {
			t.Fatalf("servicelive.UnmarshalDecky(%s): %v", enc, err)
		}
		if !reflect.DeepEqual(again, d) {
			t.Fatalf("decoded\n\t%#v\nre-encoded as %s, decoded again as\n\t%#v", d, enc, again)
		}
		if enc2, _ := servicelive.MarshalDecky(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %s then %s", enc, enc2)
		}
	})
}
