// Command hello is a tiny static binary that the image tests use as a
// stand-in runtime, so they need not build modelci itself.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println("hello from the test runtime", os.Args[1:])
}
