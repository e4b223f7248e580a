// coredns is a minimal CoreDNS for the local test cluster: only the plugins needed to answer
// cluster names (<pod>.<headless-svc>.<ns>.svc.cluster.local, services) from the API server.
// It runs as a host process listening on the pod bridge address (cluster.sh start_coredns).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
)

func init() {
	// Plugin order of this build (a subset of CoreDNS's plugin.cfg order).
	dnsserver.Directives = []string{"bind", "errors", "log", "cache", "kubernetes"}
}

func main() { coremain.Run() }
