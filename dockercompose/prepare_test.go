package dockercompose

import (
	"encoding/json"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
