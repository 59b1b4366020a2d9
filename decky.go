package servicelive

import "slices"

// Config holds one service's settings on one decky. Values produced by
// Service.Validate are string, int, bool or []string.
type Config map[string]any

// Clone returns a deep copy of c (nil stays nil).
func (c Config) Clone() Config {
	if c == nil {
		return nil
	}
	out := make(Config, len(c))
	for k, v := range c {
		if ss, ok := v.([]string); ok {
			v = slices.Clone(ss)
		}
		out[k] = v
	}
	return out
}

// Decky is one decoy host: a base container holding its network identity and
// one container per service, sharing the base's network namespace.
type Decky struct {
	Name     string
	Hostname string
	IP       string
	Image    string            // image of the decky's base (network-holding) container
	Services []string          // in the order they were added
	Config   map[string]Config // per-service settings, keyed by service name
	Network  string            // external network the base joins (at IP, when set); "" = the project's default network
	Host     string            // which Docker engine runs this decky; "" = the default one
}

// Clone returns a deep copy of d: no slice or map of the copy aliases d's.
func (d Decky) Clone() Decky {
	d.Services = slices.Clone(d.Services)
	if d.Config != nil {
		cfg := make(map[string]Config, len(d.Config))
		for k, v := range d.Config {
			cfg[k] = v.Clone()
		}
		d.Config = cfg
	}
	return d
}

// HasService reports whether service is on d.
func (d *Decky) HasService(service string) bool { return slices.Contains(d.Services, service) }

// ComposeKeys returns the compose service names of d: its base (d.Name), then
// ServiceKey(d.Name, s) for each of its services, in order.
func (d Decky) ComposeKeys() []string {
	keys := make([]string, 0, 1+len(d.Services))
	keys = append(keys, d.Name)
	for _, s := range d.Services {
		keys = append(keys, ServiceKey(d.Name, s))
	}
	return keys
}
