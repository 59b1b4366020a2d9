package dockercompose

import (
	"encoding/json"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/decnet/servicelive"
)

func testProject() *types.Project {
	base := types.ServiceConfig{Name: "web1"}
	base.CustomLabels = types.Labels{api.ProjectLabel: "p", api.ServiceLabel: "web1"}
	base.Image = "img"
	ssh := types.ServiceConfig{Name: "web1-ssh"}
	ssh.CustomLabels = types.Labels{api.ProjectLabel: "p", api.ServiceLabel: "web1-ssh"}
	ssh.Image = "img"
	ssh.NetworkMode = "service:web1"
	ssh.DependsOn = types.DependsOnConfig{"web1": {Condition: types.ServiceConditionStarted, Required: true}}
	other := types.ServiceConfig{Name: "web2"}
	other.Image = "img"
	other.Networks = map[string]*types.ServiceNetworkConfig{"ext": {Ipv4Address: "10.0.0.2"}}
	return &types.Project{
		Name:     "p",
		Services: types.Services{"web1": base, "web1-ssh": ssh, "web2": other},
		Networks: types.Networks{"ext": {Name: "ext", External: true}},
	}
}

func TestPrepare(t *testing.T) {
	project := testProject()
	before, err := json.Marshal(project)
	require.NoError(t, err)

	p, svc, visible, err := prepare(project, "web1-ssh")
	require.NoError(t, err)
	after, err := json.Marshal(project)
	require.NoError(t, err)
	assert.JSONEq(t, string(before), string(after), "the caller's project is not modified")
	assert.Nil(t, project.Services["web1"].Networks, "not even its maps")

	assert.Equal(t, []string{"web1-ssh", "web1"}, visible)
	assert.Equal(t, []string{"web1-ssh"}, p.ServiceNames(), "--no-deps")
	assert.Contains(t, p.DisabledServices, "web1", "the base is known, to resolve service:web1")
	assert.NotContains(t, p.DisabledServices, "web2", "nothing else is copied")
	assert.Empty(t, svc.DependsOn)
	for k, v := range map[string]string{
		api.ProjectLabel: "p", api.ServiceLabel: "web1-ssh", api.OneoffLabel: "False", api.VersionLabel: api.ComposeVersion,
	} {
		assert.Equal(t, v, svc.CustomLabels[k], k)
	}
	assert.Nil(t, svc.Networks, "a network mode, no networks")

	// A base without networks gets the project's default network.
	p, svc, visible, err = prepare(project, "web1")
	require.NoError(t, err)
	assert.Equal(t, []string{"web1"}, visible)
	assert.Contains(t, svc.Networks, "default")
	assert.Equal(t, "p_default", p.Networks["default"].Name)
	assert.Equal(t, "ext", p.Networks["ext"].Name)

	// Labels of another service are refused.
	bad := testProject()
	s := bad.Services["web1"]
	s.CustomLabels = types.Labels{api.ServiceLabel: "web2"}
	bad.Services["web1"] = s
	_, _, _, err = prepare(bad, "web1")
	assert.ErrorContains(t, err, "compose labels")

	// Build: relative contexts are the project's; git ones are refused;
	// the image is always (re)built, as `up --build`.
	project.WorkingDir = "/srv/p"
	b := project.Services["web2"]
	b.Build = &types.BuildConfig{Context: "svc"}
	project.Services["web2"] = b
	_, svc, _, err = prepare(project, "web2")
	require.NoError(t, err)
	assert.Equal(t, "/srv/p/svc", svc.Build.Context)
	assert.Equal(t, "svc", project.Services["web2"].Build.Context, "the caller's build section is not modified")
	assert.Equal(t, types.PullPolicyBuild, svc.PullPolicy)
	b.Build = &types.BuildConfig{Context: "https://github.com/example/repo.git#main"}
	project.Services["web2"] = b
	_, _, _, err = prepare(project, "web2")
	assert.ErrorContains(t, err, "git build contexts")

	_, _, _, err = prepare(project, "nope")
	assert.ErrorContains(t, err, `no service "nope"`)
}

// TestPrepareUnsupported checks that every field the Composer cannot honour
// in-process is refused by prepare with an *UnsupportedError naming it,
// matching servicelive.ErrInvalidService, and that file-sourced secrets
// and configs pass.
func TestPrepareUnsupported(t *testing.T) {
	file := func(name string) types.FileObjectConfig {
		return types.FileObjectConfig{Name: name, File: "/srv/" + name}
	}
	for _, tc := range []struct {
		name  string
		edit  func(p *types.Project, s *types.ServiceConfig)
		field string // "" when supported
	}{
		{"file secret", func(p *types.Project, s *types.ServiceConfig) {
			p.Secrets = types.Secrets{"db": types.SecretConfig(file("db"))}
			s.Secrets = []types.ServiceSecretConfig{{Source: "db"}}
		}, ""},
		{"file config", func(p *types.Project, s *types.ServiceConfig) {
			p.Configs = types.Configs{"motd": types.ConfigObjConfig(file("motd"))}
			s.Configs = []types.ServiceConfigObjConfig{{Source: "motd", Target: "/etc/motd"}}
		}, ""},
		{"inline secret", func(p *types.Project, s *types.ServiceConfig) {
			p.Secrets = types.Secrets{"db": {Name: "db", Content: "hunter2"}}
			s.Secrets = []types.ServiceSecretConfig{{Source: "db"}}
		}, "secrets"},
		{"environment secret", func(p *types.Project, s *types.ServiceConfig) {
			p.Secrets = types.Secrets{"db": {Name: "db", Environment: "DB_PASSWORD"}}
			s.Secrets = []types.ServiceSecretConfig{{Source: "db"}}
		}, "secrets"},
		{"external secret", func(p *types.Project, s *types.ServiceConfig) {
			p.Secrets = types.Secrets{"db": {Name: "db", External: true}}
			s.Secrets = []types.ServiceSecretConfig{{Source: "db"}}
		}, "secrets"},
		{"undeclared secret", func(_ *types.Project, s *types.ServiceConfig) {
			s.Secrets = []types.ServiceSecretConfig{{Source: "db"}}
		}, "secrets"},
		{"inline config", func(p *types.Project, s *types.ServiceConfig) {
			p.Configs = types.Configs{"motd": {Name: "motd", Content: "welcome"}}
			s.Configs = []types.ServiceConfigObjConfig{{Source: "motd"}}
		}, "configs"},
		{"environment config", func(p *types.Project, s *types.ServiceConfig) {
			p.Configs = types.Configs{"motd": {Name: "motd", Environment: "MOTD"}}
			s.Configs = []types.ServiceConfigObjConfig{{Source: "motd"}}
		}, "configs"},
		{"config with a template driver", func(p *types.Project, s *types.ServiceConfig) {
			p.Configs = types.Configs{"motd": {Name: "motd", File: "/srv/motd", TemplateDriver: "golang"}}
			s.Configs = []types.ServiceConfigObjConfig{{Source: "motd"}}
		}, "configs"},
		{"post_start", func(_ *types.Project, s *types.ServiceConfig) {
			s.PostStart = []types.ServiceHook{{Command: types.ShellCommand{"true"}}}
		}, "post_start"},
		{"pre_start", func(_ *types.Project, s *types.ServiceConfig) {
			s.PreStart = []types.PreStartHook{{}}
		}, "pre_start"},
		{"pre_stop", func(_ *types.Project, s *types.ServiceConfig) {
			s.PreStop = []types.ServiceHook{{Command: types.ShellCommand{"true"}}}
		}, "pre_stop"},
		{"provider", func(_ *types.Project, s *types.ServiceConfig) {
			s.Provider = &types.ServiceProviderConfig{Type: "model"}
		}, "provider"},
		{"use_api_socket", func(_ *types.Project, s *types.ServiceConfig) {
			s.UseAPISocket = true
		}, "use_api_socket"},
		{"models", func(p *types.Project, s *types.ServiceConfig) {
			p.Models = types.Models{"llm": {Model: "ai/smollm2"}}
			s.Models = map[string]*types.ServiceModelConfig{"llm": nil}
		}, "models"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			project := testProject()
			s := project.Services["web1-ssh"]
			tc.edit(project, &s)
			project.Services["web1-ssh"] = s
			_, _, _, err := prepare(project, "web1-ssh")
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			t.Log(err)
			var ue *UnsupportedError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, "web1-ssh", ue.Service)
			assert.Equal(t, tc.field, ue.Field)
			assert.ErrorIs(t, err, servicelive.ErrInvalidService)
			assert.Contains(t, err.Error(), "dockercompose: service web1-ssh: "+tc.field+" is not supported: ")

			// The same field on a service the Up only references (the
			// base) is no concern: that service is not created.
			project = testProject()
			b := project.Services["web1"]
			tc.edit(project, &b)
			project.Services["web1"] = b
			_, _, _, err = prepare(project, "web1-ssh")
			assert.NoError(t, err)
		})
	}

	// Project-level models a service does not use are dropped: the SDK
	// would run the docker model plugin for them.
	project := testProject()
	project.Models = types.Models{"llm": {Model: "ai/smollm2"}}
	p, _, _, err := prepare(project, "web1")
	require.NoError(t, err)
	assert.Empty(t, p.Models)
	assert.Len(t, project.Models, 1, "the caller's project is not modified")
}
