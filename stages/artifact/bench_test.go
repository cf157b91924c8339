package artifact_test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/modelci/modelci/stages/artifact"
	"github.com/modelci/modelci/stages/registry"
)

// embedded serves modelci's registry from a temporary root for b.
func embedded(b *testing.B) string {
	ctx, cancel := context.WithCancel(context.Background())
	addrs, errc := make(chan net.Addr, 1), make(chan error, 1)
	go func() {
		errc <- registry.Serve(ctx, "127.0.0.1:0", b.TempDir(), registry.OnListen(func(a net.Addr) { addrs <- a }))
	}()
	b.Cleanup(func() { cancel(); <-errc })
	select {
	case a := <-addrs:
		return a.String()
	case err := <-errc:
		b.Fatal(err)
	}
	return ""
}

// BenchmarkPush10MB pushes a 10 MB data part (incompressible, a new digest
// each time) to the embedded registry on loopback.
func BenchmarkPush10MB(b *testing.B) {
	host := embedded(b)
	data := make([]byte, 10<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		binary.LittleEndian.PutUint64(data, uint64(i))
		if err := os.WriteFile(filepath.Join(dir, "train.csv"), data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := artifact.Push(b.Context(), host+"/bench", artifact.ArtifactTypeTrainingInput,
			[]artifact.Part{{Path: "data", Dir: dir, MediaType: artifact.MediaTypeDataset}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPull10MB pulls a 10 MB artifact from the embedded registry on
// loopback into a new directory each time.
func BenchmarkPull10MB(b *testing.B) {
	host := embedded(b)
	data := make([]byte, 10<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "train.csv"), data, 0o644); err != nil {
		b.Fatal(err)
	}
	p, err := artifact.Push(b.Context(), host+"/bench", artifact.ArtifactTypeTrainingInput,
		[]artifact.Part{{Path: "data", Dir: dir, MediaType: artifact.MediaTypeDataset}})
	if err != nil {
		b.Fatal(err)
	}
	dests := b.TempDir()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		if _, err := artifact.Pull(b.Context(), p.Ref, filepath.Join(dests, strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
}
