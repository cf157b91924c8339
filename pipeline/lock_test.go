package pipeline_test

import (
	"errors"
	"testing"

	"github.com/modelci/modelci/pipeline"
)

func TestLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	l, err := pipeline.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.LockDir(dir); !errors.Is(err, pipeline.ErrLocked) {
		t.Fatalf("second lock: err = %v, want ErrLocked", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := pipeline.LockDir(dir)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}
