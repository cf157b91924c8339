package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LeaseDuration is how long a writer's lease lasts without renewal: a writer that dies
// blocks others for at most this long.
const LeaseDuration = 60 * time.Second

// LeaseName is the name of the Lease that serialises writers of app in its namespace.
func LeaseName(app string) string { return "modelci-" + app }

// lease is a held coordination.k8s.io Lease, renewed in the background until released.
type lease struct {
	t      *Target
	ns     string
	name   string
	holder string
	stop   chan struct{}
	wg     sync.WaitGroup
}

// acquire takes the app's Lease before any write. A Lease held by another writer and not
// expired is ErrConflict, as is losing a race to create or take it over.
func (t *Target) acquire(ctx context.Context, ns, app, who string) (*lease, error) {
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("lease holder id: %w", err)
	}
	l := &lease{t: t, ns: ns, name: LeaseName(app), holder: who + "/" + hex.EncodeToString(suffix), stop: make(chan struct{})}
	leases := t.Client.CoordinationV1().Leases(ns)
	now := metav1.NewMicroTime(time.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr(l.holder),
		LeaseDurationSeconds: ptr(int32(LeaseDuration / time.Second)),
		AcquireTime:          &now,
		RenewTime:            &now,
	}
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		obj := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.name, Namespace: ns, Labels: map[string]string{LabelName: app, LabelManagedBy: ManagedBy}}, Spec: spec}
		if _, err := leases.Create(ctx, obj, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("app %s in namespace %s: %w (it was taken a moment ago)", app, ns, ErrConflict)
			}
			return nil, fmt.Errorf("lease %s/%s: %w", ns, l.name, classify(err))
		}
	case err != nil:
		return nil, fmt.Errorf("lease %s/%s: %w", ns, l.name, classify(err))
	default:
		if held(cur, time.Now()) {
			return nil, fmt.Errorf("app %s in namespace %s: %w: held by %s since %s", app, ns, ErrConflict, *cur.Spec.HolderIdentity, cur.Spec.AcquireTime.Format(time.RFC3339))
		}
		cur.Spec = spec
		if _, err := leases.Update(ctx, cur, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			if apierrors.IsConflict(err) {
				return nil, fmt.Errorf("app %s in namespace %s: %w (it was taken a moment ago)", app, ns, ErrConflict)
			}
			return nil, fmt.Errorf("lease %s/%s: %w", ns, l.name, classify(err))
		}
	}
	l.wg.Add(1)
	go l.renew()
	return l, nil
}

// held reports whether a Lease has a holder whose renewal has not expired.
func held(l *coordinationv1.Lease, now time.Time) bool {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return false
	}
	return now.Before(s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second))
}

func (l *lease) renew() {
	defer l.wg.Done()
	tick := time.NewTicker(LeaseDuration / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), LeaseDuration/3)
		leases := l.t.Client.CoordinationV1().Leases(l.ns)
		cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
		if err == nil && cur.Spec.HolderIdentity != nil && *cur.Spec.HolderIdentity == l.holder {
			cur.Spec.RenewTime = ptr(metav1.NewMicroTime(time.Now()))
			_, err = leases.Update(ctx, cur, metav1.UpdateOptions{FieldManager: FieldManager})
		}
		cancel()
		if err != nil {
			l.t.logf("warning: renewing lease %s/%s: %v", l.ns, l.name, err)
		}
	}
}

// release stops renewing and deletes the Lease if this writer still holds it.
func (l *lease) release() {
	close(l.stop)
	l.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leases := l.t.Client.CoordinationV1().Leases(l.ns)
	cur, err := leases.Get(ctx, l.name, metav1.GetOptions{})
	if err != nil || cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.holder {
		return
	}
	pre := metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}
	if err := leases.Delete(ctx, l.name, metav1.DeleteOptions{Preconditions: &pre}); err != nil && !apierrors.IsNotFound(err) {
		l.t.logf("warning: releasing lease %s/%s: %v (it expires in %s)", l.ns, l.name, err, LeaseDuration)
	}
}

// Lease is an app's Lease held across several calls: a promotion takes it before
// its first registry write and deploys under it (Input.Lease), so a concurrent
// writer is refused before anything changes.
type Lease struct {
	l    *lease
	app  string
	once sync.Once
}

// Acquire takes app's Lease in namespace ns for who; another writer's unexpired
// Lease is ErrConflict. The caller must Release it.
func (t *Target) Acquire(ctx context.Context, ns, app, who string) (*Lease, error) {
	l, err := t.acquire(ctx, ns, app, who)
	if err != nil {
		return nil, err
	}
	return &Lease{l: l, app: app}, nil
}

// Release stops renewing the Lease and deletes it if this writer still holds it.
// Calling it again does nothing.
func (l *Lease) Release() { l.once.Do(l.l.release) }

// Holder is the Lease's holder identity (who, and a random suffix).
func (l *Lease) Holder() string { return l.l.holder }

// check reports whether l is t's Lease of app in ns.
func (l *Lease) check(t *Target, ns, app string) error {
	if l.l.t != t || l.l.ns != ns || l.app != app {
		return fmt.Errorf("deploy %s in namespace %s: lease %s/%s is another app's or target's", app, ns, l.l.ns, l.l.name)
	}
	return nil
}
