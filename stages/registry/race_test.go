package registry_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/modelci/modelci/internal/ocitest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/registry"
)

// barrier releases its waiters once n have arrived.
type barrier struct {
	mu      sync.Mutex
	n       int
	release chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.n--
	if b.n == 0 {
		close(b.release)
	}
	b.mu.Unlock()
	<-b.release
}

// raceMode is how two writers of one tag are lined up.
type raceMode int

const (
	// startTogether: both pushes start at once (a channel closes).
	startTogether raceMode = iota
	// writeTogether: both have read the tag as absent, just before their
	// PUTs, when both PUTs are released: the worst case for a check then
	// write.
	writeTogether
)

func (m raceMode) String() string { return [...]string{"start together", "write together"}[m] }

// raceResult is one round: each writer's error, and what the tag names.
type raceResult struct {
	errs   [2]error
	digest [2]v1.Hash
	tag    v1.Hash
}

func (r raceResult) winners() int {
	n := 0
	for _, err := range r.errs {
		if err == nil {
			n++
		}
	}
	return n
}

// race has two writers put different images under repo:tag at once, by
// Push or, with viaCopy, by a deferred push then a Copy of the digest with
// the tag (as modelci run, modelci copy and promote do).
func race(t *testing.T, repo, tag string, seed uint64, mode raceMode, viaCopy bool, opts ...registry.Option) raceResult {
	t.Helper()
	ctx := context.Background()
	imgs := [2]v1.Image{randomImage(t, seed), randomImage(t, seed+1000)}
	var (
		res   raceResult
		refs  [2]string
		start = make(chan struct{})
		wg    sync.WaitGroup
	)
	for i := range imgs {
		res.digest[i] = digestOf(t, imgs[i])
	}
	if viaCopy {
		for i, img := range imgs {
			p, err := registry.Push(ctx, img, repo, append(opts, registry.WithTags(tag), registry.WithDeferredTags())...)
			if err != nil {
				t.Fatal(err)
			}
			refs[i] = p.Ref
		}
	}
	b := newBarrier(2)
	for i, img := range imgs {
		o := append(opts, registry.WithTags(tag))
		if mode == writeTogether {
			o = append(o, registry.WithBeforeTagWrite(func(string) { b.wait() }))
		}
		wg.Go(func() {
			<-start
			if viaCopy {
				_, res.errs[i] = registry.Copy(ctx, refs[i], repo, o...)
			} else {
				_, res.errs[i] = registry.Push(ctx, img, repo, o...)
			}
		})
	}
	close(start)
	wg.Wait()
	h, err := registry.Resolve(ctx, repo+":"+tag, opts...)
	if err != nil {
		t.Fatalf("round %s: the tag: %v", tag, err)
	}
	res.tag = h
	return res
}

// checkLoser checks that a writer that failed lost to the tag's digest:
// ErrTagConflict (and ErrTagExists) naming it. Writers that start together
// may also find the other's push already done before they upload: then
// the loser's error is the plain ErrTagExists, naming what the tag holds.
func checkLoser(t *testing.T, tag string, mode raceMode, r raceResult) {
	t.Helper()
	for i, err := range r.errs {
		if err == nil {
			if r.digest[i] != r.tag && r.winners() == 1 {
				t.Errorf("round %s: writer %d won with %s but the tag names %s", tag, i, r.digest[i], r.tag)
			}
			continue
		}
		var tc *registry.TagConflictError
		if mode == startTogether && errors.Is(err, registry.ErrTagExists) && !errors.As(err, &tc) {
			if !strings.Contains(err.Error(), "it holds "+r.tag.String()) {
				t.Errorf("round %s: writer %d: %v; the tag names %s", tag, i, err, r.tag)
			}
			continue
		}
		if !errors.Is(err, registry.ErrTagConflict) || !errors.Is(err, registry.ErrTagExists) || !errors.As(err, &tc) {
			t.Fatalf("round %s: writer %d: %v, want ErrTagConflict", tag, i, err)
		}
		if tc.Winner != r.tag || tc.Digest != r.digest[i] {
			t.Errorf("round %s: writer %d's conflict names winner %s (its own %s); the tag names %s", tag, i, tc.Winner, tc.Digest, r.tag)
		}
	}
}

// Against the embedded registry, which checks conditional writes, two
// writers of one tag give exactly one winner every round, however they are
// lined up, by Push or by Copy; the loser's error names the winner.
func TestTagRaceEmbeddedRegistry(t *testing.T) {
	host, _ := serve(t, t.TempDir())
	const rounds = 24
	for round := range rounds {
		mode, viaCopy := raceMode(round%2), round%4 >= 2
		tag := fmt.Sprintf("1.0.%d", round)
		r := race(t, host+"/race/m", tag, uint64(10*round+1), mode, viaCopy, fast)
		if r.winners() != 1 {
			t.Fatalf("round %d (%s, copy %v): %d winners (%v), want exactly one", round, mode, viaCopy, r.winners(), r.errs)
		}
		checkLoser(t, tag, mode, r)
	}
}

// Against Debian's docker-registry (distribution 2.8), which ignores the
// conditions, each writer reads the tag back after the settle delay and
// again before it reports success. Measured: how often both writers still
// report success; asserted: not every time. Nothing here waits for the
// settle delay except the pushes themselves, at its default.
func TestTagRaceDistributionRegistry(t *testing.T) {
	host := ocitest.Distribution(t)
	const rounds = 24
	both := map[raceMode]int{}
	n := map[raceMode]int{}
	var mu sync.Mutex
	// Rounds race for different tags, so they may run side by side.
	t.Run("rounds", func(t *testing.T) {
		for round := range rounds {
			mode, viaCopy := raceMode(round%2), round%4 >= 2
			tag := fmt.Sprintf("1.0.%d", round)
			t.Run(tag, func(t *testing.T) {
				t.Parallel()
				// distribution writes a tag's link file in place: a read
				// that meets the write sees it empty and answers 500, so
				// reads are retried with a short backoff, as a user's are.
				r := race(t, host+"/race/m", tag, uint64(10*round+1), mode, viaCopy, registry.WithRetry(6, 20*time.Millisecond))
				mu.Lock()
				n[mode]++
				if r.winners() == 2 {
					both[mode]++
				}
				mu.Unlock()
				checkLoser(t, tag, mode, r)
			})
		}
	})
	total := both[startTogether] + both[writeTogether]
	for _, m := range []raceMode{startTogether, writeTogether} {
		t.Logf("docker-registry, %s: both writers reported success in %d of %d rounds", m, both[m], n[m])
	}
	t.Logf("docker-registry: both writers reported success in %d of %d rounds (%.0f%%), settle %s", total, rounds, 100*float64(total)/rounds, registry.DefaultTagSettle)
	if total == rounds {
		t.Fatalf("both writers won every round")
	}
}

// The window that remains where the registry does not check conditions: a
// writer that read the tag as absent before the other wrote it, and whose
// PUT comes only after the other's last read-back, overwrites the tag and
// both report success. The embedded registry refuses that PUT (412) and
// the late writer loses.
func TestTagRaceWindow(t *testing.T) {
	ctx := context.Background()
	embedded, _ := serve(t, t.TempDir())
	hosts := map[string]string{"embedded": embedded}
	if testing.Short() {
		t.Log("-short: the embedded registry only")
	} else if _, err := exec.LookPath("docker-registry"); err == nil {
		hosts["docker-registry"] = ocitest.Distribution(t)
	}
	for kind, host := range hosts {
		t.Run(kind, func(t *testing.T) {
			repo := host + "/window/m"
			a, b := randomImage(t, 501), randomImage(t, 502)
			bRead, aDone := make(chan struct{}), make(chan struct{})
			var errA, errB error
			var wg sync.WaitGroup
			wg.Go(func() {
				// B reads the tag as absent; its PUT waits for A to finish.
				_, errB = registry.Push(ctx, b, repo, fast, registry.WithTags("1.0.0"),
					registry.WithBeforeTagWrite(func(string) { close(bRead); <-aDone }))
			})
			wg.Go(func() {
				defer close(aDone)
				<-bRead
				_, errA = registry.Push(ctx, a, repo, fast, registry.WithTags("1.0.0"))
			})
			wg.Wait()
			tag, err := registry.Resolve(ctx, repo+":1.0.0", fast)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: first writer %v, late writer %v; the tag names the %s writer's digest", kind, errA, errB,
				map[bool]string{true: "first", false: "late"}[tag == digestOf(t, a)])
			if errA != nil {
				t.Fatalf("first writer: %v", errA)
			}
			if kind == "embedded" {
				if !errors.Is(errB, registry.ErrTagConflict) || tag != digestOf(t, a) {
					t.Fatalf("late writer: %v, tag %s; want ErrTagConflict and the first writer's digest", errB, tag)
				}
				return
			}
			// docker-registry: the window is real.
			if errB != nil || tag != digestOf(t, b) {
				t.Fatalf("late writer: %v, tag %s; the window was expected to let it overwrite", errB, tag)
			}
		})
	}
}

// --allow-overwrite moves a tag only from the digest it read (If-Match):
// a tag moved by someone else between that read and the PUT stays theirs,
// and the overwrite fails with ErrTagConflict naming their digest.
func TestAllowOverwriteIsConditional(t *testing.T) {
	ctx := context.Background()
	host, _ := serve(t, t.TempDir())
	repo := host + "/overwrite/m"
	x, y, z := randomImage(t, 601), randomImage(t, 602), randomImage(t, 603)
	if _, err := registry.Push(ctx, x, repo, fast, registry.WithTags("1.0.0")); err != nil {
		t.Fatal(err)
	}
	_, err := registry.Push(ctx, z, repo, fast, registry.WithTags("1.0.0"), registry.WithAllowOverwrite(),
		registry.WithBeforeTagWrite(func(string) {
			// Between the read (x) and the PUT, another overwrite lands.
			if _, err := registry.Push(ctx, y, repo, fast, registry.WithTags("1.0.0"), registry.WithAllowOverwrite()); err != nil {
				t.Error(err)
			}
		}))
	var tc *registry.TagConflictError
	if !errors.As(err, &tc) || tc.Winner != digestOf(t, y) {
		t.Fatalf("overwrite from a stale read: %v, want ErrTagConflict naming %s", err, digestOf(t, y))
	}
	if h, err := registry.Resolve(ctx, repo+":1.0.0", fast); err != nil || h != digestOf(t, y) {
		t.Fatalf("the tag names %s (%v), want the other overwrite's %s", h, err, digestOf(t, y))
	}
	// Without a race it moves.
	if _, err := registry.Push(ctx, z, repo, fast, registry.WithTags("1.0.0"), registry.WithAllowOverwrite()); err != nil {
		t.Fatal(err)
	}
	if h, _ := registry.Resolve(ctx, repo+":1.0.0", fast); h != digestOf(t, z) {
		t.Fatalf("the tag names %s, want %s", h, digestOf(t, z))
	}
}
