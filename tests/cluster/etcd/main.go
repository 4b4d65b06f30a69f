// Command etcd is the real etcd server (go.etcd.io/etcd/server/v3), built from
// its Go module at a pinned version for MOM's local control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
