package registry_test

import (
	"context"
	"testing"

	"github.com/modelci/modelci/stages/registry"
)

// BenchmarkPush pushes a 20 MB image (a 15 MB runtime layer and a 5 MB
// model layer) into a fresh in-process registry over loopback HTTP.
func BenchmarkPush(b *testing.B) {
	img := ociImage(b, layer(b, "ko-app/runtime", 15<<20, 1), layer(b, "model/weights.bin", 5<<20, 2))
	b.SetBytes(imageSize(b, img))
	for b.Loop() {
		b.StopTimer()
		srv := newServer(b)
		b.StartTimer()
		if _, err := registry.Push(context.Background(), img, srv.Host+"/m", registry.WithTags("1.0.0")); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		srv.Close()
		b.StartTimer()
	}
}

// BenchmarkRetrainPush pushes a retrain (same runtime layer, new model
// layer) after the first version and reports the bytes uploaded divided by
// the image's size.
func BenchmarkRetrainPush(b *testing.B) {
	runtime := layer(b, "ko-app/runtime", 15<<20, 1)
	first := ociImage(b, runtime, layer(b, "model/weights.bin", 5<<20, 2))
	retrain := ociImage(b, runtime, layer(b, "model/weights.bin", 5<<20, 3))
	size := imageSize(b, retrain)
	var ratio float64
	for b.Loop() {
		b.StopTimer()
		srv := newServer(b)
		if _, err := registry.Push(context.Background(), first, srv.Host+"/m", registry.WithTags("1.0.0")); err != nil {
			b.Fatal(err)
		}
		srv.reset()
		b.StartTimer()
		if _, err := registry.Push(context.Background(), retrain, srv.Host+"/m", registry.WithTags("1.0.1")); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_, _, _, in := srv.snapshot()
		ratio = float64(in) / float64(size)
		srv.Close()
		b.StartTimer()
	}
	b.ReportMetric(ratio, "uploaded/size")
}
