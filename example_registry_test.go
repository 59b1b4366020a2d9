package servicelive_test

import (
	"errors"
	"fmt"

	"github.com/decnet/servicelive"
)

func ExampleRegistry() {
	reg, err := servicelive.NewRegistry(
		servicelive.Service{Name: "ssh", Image: "decnet/ssh", Ports: []int{22}},
		servicelive.Service{Name: "http", Image: "decnet/http", Ports: []int{80}},
	)
	if err != nil {
		panic(err)
	}
	fmt.Println(reg.Names())

	err = reg.Register(servicelive.Service{Name: "SMB", Image: "decnet/smb"})
	fmt.Println(errors.Is(err, servicelive.ErrInvalidService))
	// Output:
	// [http ssh]
	// true
}

func ExampleService_Validate() {
	ssh := servicelive.Service{
		Name:  "ssh",
		Image: "decnet/ssh",
		Schema: []servicelive.Field{
			{Key: "port", Type: servicelive.FieldInt},
			{Key: "root_login", Type: servicelive.FieldBool},
			{Key: "ciphers", Type: servicelive.FieldMultiEnum, Enum: []string{"aes128", "aes256"}},
		},
	}
	cfg, err := ssh.Validate(servicelive.Config{
		"port":       "2222",
		"root_login": "yes",
		"ciphers":    []any{"aes256", "aes256", "aes128"},
		"unknown":    "dropped",
	})
	fmt.Println(cfg["port"], cfg["root_login"], cfg["ciphers"], len(cfg), err)

	_, err = ssh.Validate(servicelive.Config{"port": "eighty"})
	var ce *servicelive.ConfigError
	fmt.Println(errors.As(err, &ce), ce.Key)
	fmt.Println(err)
	// Output:
	// 2222 true [aes256 aes128] 3 <nil>
	// true port
	// servicelive: service ssh: config port: "eighty" is not an integer
}
