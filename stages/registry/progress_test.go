package registry_test

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelci/modelci/stages/registry"
)

// feed sends updates for a total-byte upload in steps, then closes.
func feed(total int64, steps []int64, fail error) <-chan v1.Update {
	ch := make(chan v1.Update, len(steps)+1)
	for _, done := range steps {
		ch <- v1.Update{Total: total, Complete: done}
	}
	if fail != nil {
		ch <- v1.Update{Error: fail}
	}
	close(ch)
	return ch
}

func TestRenderProgress(t *testing.T) {
	const total = 10_000_000
	steps := []int64{0, 2_500_000, 2_500_100, 5_000_000, 10_000_000}
	tests := []struct {
		name string
		tty  bool
		fail error
		want string
	}{
		{"terminal", true, nil, "" +
			"\r127.0.0.1:5000/m [                              ] 0.0 MB of 10.0 MB" +
			"\r127.0.0.1:5000/m [=======                       ] 2.5 MB of 10.0 MB" +
			// 2,500,100 bytes is the same thousandth: no redraw.
			"\r127.0.0.1:5000/m [===============               ] 5.0 MB of 10.0 MB" +
			"\r127.0.0.1:5000/m [==============================] 10.0 MB of 10.0 MB\n"},
		{"plain", false, nil, "" +
			"push 127.0.0.1:5000/m: 0% (0.0 MB of 10.0 MB)\n" +
			"push 127.0.0.1:5000/m: 20% (2.5 MB of 10.0 MB)\n" +
			"push 127.0.0.1:5000/m: 50% (5.0 MB of 10.0 MB)\n" +
			"push 127.0.0.1:5000/m: 100% (10.0 MB of 10.0 MB)\n"},
		{"terminal, failed", true, errors.New("connection reset"), "" +
			"\r127.0.0.1:5000/m [                              ] 0.0 MB of 10.0 MB" +
			"\r127.0.0.1:5000/m [=======                       ] 2.5 MB of 10.0 MB" +
			"\r127.0.0.1:5000/m [===============               ] 5.0 MB of 10.0 MB" +
			"\r127.0.0.1:5000/m [==============================] 10.0 MB of 10.0 MB\n" +
			"push 127.0.0.1:5000/m: failed: connection reset\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			registry.Render(&b, tt.tty, "127.0.0.1:5000/m", total, feed(total, steps, tt.fail))
			if b.String() != tt.want {
				t.Errorf("got\n%q\nwant\n%q", b.String(), tt.want)
			}
		})
	}
}
