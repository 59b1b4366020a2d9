package sqlstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/decnet/servicelive"
)

// jsonDecky is the document a row holds for one Decky, the same form as a
// decky line of a FileStore file:
//
//	{"name":"web1","image":"alpine","services":["ssh"],"config":{"ssh":{"port":{"t":"int","v":22}}}}
//
// Services and Config keep nil apart from empty.
type jsonDecky struct {
	Name     string                          `json:"name"`
	Hostname string                          `json:"hostname,omitempty"`
	IP       string                          `json:"ip,omitempty"`
	Image    string                          `json:"image,omitempty"`
	Services []string                        `json:"services"`
	Config   map[string]map[string]jsonValue `json:"config"`
	Network  string                          `json:"network,omitempty"`
	Host     string                          `json:"host,omitempty"`
}

// jsonValue is one config value: its Go type and its value.
type jsonValue struct {
	T string `json:"t"` // "string", "int", "bool" or "[]string"
	V any    `json:"v"`
}

// encodeDecky returns the document of d, whose config values must be
// string, int, bool or []string (servicelive.CheckPut and CheckUpdate have seen to it).
func encodeDecky(d servicelive.Decky) ([]byte, error) {
	w := jsonDecky{
		Name: d.Name, Hostname: d.Hostname, IP: d.IP, Image: d.Image,
		Services: d.Services, Network: d.Network, Host: d.Host,
	}
	if d.Config != nil {
		w.Config = make(map[string]map[string]jsonValue, len(d.Config))
		for svc, cfg := range d.Config {
			if cfg == nil {
				w.Config[svc] = nil
				continue
			}
			m := make(map[string]jsonValue, len(cfg))
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
				m[k] = jsonValue{T: t, V: v}
			}
			w.Config[svc] = m
		}
	}
	return json.Marshal(w)
}

// decodeDecky decodes and checks a document encodeDecky wrote.
func decodeDecky(doc []byte) (servicelive.Decky, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var w jsonDecky
	if err := dec.Decode(&w); err != nil {
		return servicelive.Decky{}, fmt.Errorf("bad document: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return servicelive.Decky{}, errors.New("bad document: data after the decky")
	}
	d := servicelive.Decky{
		Name: w.Name, Hostname: w.Hostname, IP: w.IP, Image: w.Image,
		Services: w.Services, Network: w.Network, Host: w.Host,
	}
	if w.Config != nil {
		d.Config = make(map[string]servicelive.Config, len(w.Config))
		for svc, m := range w.Config {
			if m == nil {
				d.Config[svc] = nil
				continue
			}
			cfg := make(servicelive.Config, len(m))
			for k, jv := range m {
				v, err := jv.value()
				if err != nil {
					return servicelive.Decky{}, fmt.Errorf("config %s of service %s: %w", k, svc, err)
				}
				cfg[k] = v
			}
			d.Config[svc] = cfg
		}
	}
	return d, nil
}

// value returns the Go value jv describes; jv.V was decoded with UseNumber.
func (jv jsonValue) value() (any, error) {
	bad := func() (any, error) { return nil, fmt.Errorf("value of type %q is %T", jv.T, jv.V) }
	switch jv.T {
	case "string":
		if v, ok := jv.V.(string); ok {
			return v, nil
		}
	case "int":
		n, ok := jv.V.(json.Number)
		if !ok {
			return bad()
		}
		i, err := strconv.ParseInt(string(n), 10, strconv.IntSize)
		if err != nil {
			return nil, fmt.Errorf("value of type \"int\" is %s, not an int", n)
		}
		return int(i), nil
	case "bool":
		if v, ok := jv.V.(bool); ok {
			return v, nil
		}
	case "[]string":
		switch v := jv.V.(type) {
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
		return nil, fmt.Errorf("unknown value type %q", jv.T)
	}
	return bad()
}
