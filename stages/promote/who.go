package promote

import (
	"os"
	"os/user"
)

// who names the person or workflow promoting: GITHUB_ACTOR on a runner,
// else user@host (as stages/deploy records it).
func who() string {
	if a := os.Getenv("GITHUB_ACTOR"); a != "" {
		return a + " (github actions)"
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}
