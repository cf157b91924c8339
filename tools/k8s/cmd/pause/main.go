// Command pause is the pod sandbox of the test node: it holds the pod's namespaces and sleeps
// until it is told to stop. internal/k8stest packs it into an image and pushes it to the node's
// loopback registry, since the node reaches no other registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
