package promote_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/modelci/modelci/modelgate"
	"github.com/modelci/modelci/stages/promote"
)

// BenchmarkPromote promotes a fresh version per iteration between two
// in-process registries and reports each step's mean time (the deploy step
// is the in-memory cluster here: the cluster's share is measured with it).
func BenchmarkPromote(b *testing.B) {
	w := newWorld(b)
	w.prod.Constraint = ""
	steps := map[string]time.Duration{}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		v := fmt.Sprintf("1.%d.0", i)
		w.publish(b, v, modelgate.Pass, true)
		b.StartTimer()
		res, err := promote.Promote(b.Context(), w.in(v))
		if err != nil {
			b.Fatal(err)
		}
		for _, s := range res.Steps {
			steps[s.Name] += s.Duration
		}
	}
	for name, d := range steps {
		b.ReportMetric(float64(d.Microseconds())/1000/float64(b.N), name+"-ms/op")
	}
}
