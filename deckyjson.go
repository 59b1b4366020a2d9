package servicelive

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// fsDecky is the JSON form of a Decky. Services and Config keep nil apart
// from empty.
type fsDecky struct {
	Name     string                        `json:"name"`
	Hostname string                        `json:"hostname,omitempty"`
	IP       string                        `json:"ip,omitempty"`
	Image    string                        `json:"image,omitempty"`
	Services []string                      `json:"services"`
	Config   map[string]map[string]fsValue `json:"config"`
	Network  string                        `json:"network,omitempty"`
	Host     string                        `json:"host,omitempty"`
}

// fsValue is the JSON form of a config value: its Go type and its value.
type fsValue struct {
	T string `json:"t"` // "string", "int", "bool" or "[]string"
	V any    `json:"v"`
}

// MarshalDecky returns the JSON document of d that FileStore (one per
// decky in its file) and sqlstore (one per row) store, and that a Store of
// your own may use:
//
//	{"name":"web1","image":"alpine","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22}}}}
//
// Each config value carries its Go type ("string", "int", "bool" or
// "[]string": the types Service.Validate and CheckPut leave), so it comes
// back with the same type; Services and Config keep nil apart from empty.
// Another value type is an error.
func MarshalDecky(d Decky) ([]byte, error) {
	w := fsDecky{
		Name: d.Name, Hostname: d.Hostname, IP: d.IP, Image: d.Image,
		Services: d.Services, Network: d.Network, Host: d.Host,
	}
	if d.Config != nil {
		w.Config = make(map[string]map[string]fsValue, len(d.Config))
		for svc, cfg := range d.Config {
			if cfg == nil {
				w.Config[svc] = nil
				continue
			}
			m := make(map[string]fsValue, len(cfg))
			for k, v := range cfg {
				var t string
				switch v.(type) {
				case string:
					t = "string"
				case int:
					t = "int"
				case bool:
					t = "bool"
				case []string:
					t = "[]string"
				default:
					return nil, fmt.Errorf("config %s of service %s: unsupported type %T", k, svc, v)
				}
				m[k] = fsValue{T: t, V: v}
			}
			w.Config[svc] = m
		}
	}
	return json.Marshal(w)
}

// decky returns the Decky w describes.
func (w *fsDecky) decky() (Decky, error) {
	d := Decky{
		Name: w.Name, Hostname: w.Hostname, IP: w.IP, Image: w.Image,
		Services: w.Services, Network: w.Network, Host: w.Host,
	}
	if w.Config == nil {
		return d, nil
	}
	d.Config = make(map[string]Config, len(w.Config))
	for svc, m := range w.Config {
		if m == nil {
			d.Config[svc] = nil
			continue
		}
		cfg := make(Config, len(m))
		for k, fv := range m {
			v, err := fv.value()
			if err != nil {
				return Decky{}, fmt.Errorf("config %s of service %s: %w", k, svc, err)
			}
			cfg[k] = v
		}
		d.Config[svc] = cfg
	}
	return d, nil
}

// value returns the Go value fv describes; fv.V was decoded with UseNumber.
func (fv fsValue) value() (any, error) {
	bad := func() (any, error) { return nil, fmt.Errorf("value of type %q is %T", fv.T, fv.V) }
	switch fv.T {
	case "string":
		if v, ok := fv.V.(string); ok {
			return v, nil
		}
	case "int":
		n, ok := fv.V.(json.Number)
		if !ok {
			return bad()
		}
		i, err := strconv.ParseInt(string(n), 10, strconv.IntSize)
		if err != nil {
			return nil, fmt.Errorf("value of type \"int\" is %s, not an int", n)
		}
		return int(i), nil
	case "bool":
		if v, ok := fv.V.(bool); ok {
			return v, nil
		}
	case "[]string":
		switch v := fv.V.(type) {
		case nil:
			return []string(nil), nil
		case []any:
			out := make([]string, len(v))
			for i, x := range v {
				s, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("value of type \"[]string\" holds %T", x)
				}
				out[i] = s
			}
			return out, nil
		}
	default:
		return nil, fmt.Errorf("unknown value type %q", fv.T)
	}
	return bad()
}

// UnmarshalDecky decodes a document MarshalDecky wrote, checking it: one
// JSON object, nothing after it, typed values of the known types, a valid
// decky name.
func UnmarshalDecky(enc []byte) (Decky, error) {
	dec := json.NewDecoder(bytes.NewReader(enc))
	dec.UseNumber()
	var w fsDecky
	if err := dec.Decode(&w); err != nil {
		return Decky{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return Decky{}, errors.New("data after the decky")
	}
	d, err := w.decky()
	if err != nil {
		return Decky{}, err
	}
	if !ValidDeckyName(d.Name) {
		return Decky{}, fmt.Errorf("bad decky name %q", d.Name)
	}
	return d, nil
}
