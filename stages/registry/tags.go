package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultTagSettle is how long a push waits, after writing a tag to a
// registry that does not say it checked the write's precondition, before
// reading the tag back (WithTagSettle).
const DefaultTagSettle = time.Second

// ErrTagConflict: another push moved the tag while this one was writing
// it, and won: the tag names the other push's digest. The error is a
// *TagConflictError naming both digests; it is also ErrTagExists.
var ErrTagConflict = errors.New("tag taken by a concurrent push")

// TagConflictError is ErrTagConflict for one tag.
type TagConflictError struct {
	Tag    string  // HOST[:PORT]/PATH:TAG
	Winner v1.Hash // what the tag names now (zero: nothing)
	Digest v1.Hash // what this push wrote
}

func (e *TagConflictError) Error() string {
	winner := "nothing"
	if e.Winner != (v1.Hash{}) {
		winner = e.Winner.String()
	}
	return fmt.Sprintf("tag %s: %v: it names %s, this push is %s (tags are immutable; the other push won)", e.Tag, ErrTagConflict, winner, e.Digest)
}

// Is makes errors.Is true for ErrTagConflict and ErrTagExists.
func (e *TagConflictError) Is(target error) bool {
	return target == ErrTagConflict || target == ErrTagExists
}

// tagWriter moves tags of one push, each by a conditional manifest PUT:
// If-None-Match: * where the tag names nothing, If-Match: "<digest>" where
// it names the digest read just before (WithAllowOverwrite); latest is
// written unconditionally. A 412 means another writer came first: the tag
// is read again, and names this push (a no-op) or the winner
// (ErrTagConflict). A registry that ignores the conditions answers 201
// without ConditionHeader: the tag is read back after the settle delay and
// again before the push reports success, and a writer that finds another
// digest there lost.
type tagWriter struct {
	c        *conn
	puller   *remote.Puller
	repo     name.Repository
	digest   v1.Hash
	raw      []byte
	media    types.MediaType
	o        *options
	unproven []string // tags written where the registry did not check the condition
}

// read returns the digest tag names, zero when none.
func (w *tagWriter) read(ctx context.Context, tag string) (v1.Hash, error) {
	tr := w.repo.Tag(tag)
	desc, err := w.puller.Head(ctx, tr)
	if err != nil {
		if err := classify("tag "+tr.String(), err); errors.Is(err, ErrNotFound) {
			return v1.Hash{}, nil
		} else {
			return v1.Hash{}, err
		}
	}
	return desc.Digest, nil
}

func (w *tagWriter) conflict(tag string, winner v1.Hash) error {
	return &TagConflictError{Tag: w.repo.Tag(tag).String(), Winner: winner, Digest: w.digest}
}

// move makes tag name the push's digest.
func (w *tagWriter) move(ctx context.Context, tag string) error {
	tr := w.repo.Tag(tag)
	cur, err := w.read(ctx, tag)
	if err != nil {
		return err
	}
	if cur == w.digest {
		return nil
	}
	var cond [2]string
	switch {
	case tag == LatestTag:
	case cur == (v1.Hash{}):
		cond = [2]string{"If-None-Match", "*"}
	case w.o.allowOverwrite:
		cond = [2]string{"If-Match", `"` + cur.String() + `"`}
	default:
		// It named nothing when the push began (checkTags).
		return w.conflict(tag, cur)
	}
	if w.o.beforeTagWrite != nil {
		w.o.beforeTagWrite(tag)
	}
	var resp *http.Response
	err = retry(ctx, w.c.access, func(int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, w.c.url("/manifests/"+tag), bytes.NewReader(w.raw))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", string(w.media))
		if cond[0] != "" {
			req.Header.Set(cond[0], cond[1])
		}
		resp, err = w.c.do(req, http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusPreconditionFailed)
		if err != nil {
			return err
		}
		return drain(resp)
	})
	if err != nil {
		return classify("tag "+tr.String(), err)
	}
	if resp.StatusCode == http.StatusPreconditionFailed {
		// Another writer came first (or an attempt of ours that looked
		// failed did land): the tag says which.
		now, err := w.read(ctx, tag)
		if err != nil {
			return err
		}
		if now != w.digest {
			return w.conflict(tag, now)
		}
		return nil
	}
	if cond[0] != "" && resp.Header.Get(ConditionHeader) == "" {
		w.unproven = append(w.unproven, tag)
	}
	return nil
}

// verify reads back the tags written where the registry did not check the
// condition: each must name the push's digest, else another writer's PUT
// landed after ours and won.
func (w *tagWriter) verify(ctx context.Context) error {
	for _, tag := range w.unproven {
		now, err := w.read(ctx, tag)
		if err != nil {
			return err
		}
		if now != w.digest {
			return w.conflict(tag, now)
		}
	}
	return nil
}

// moveTags moves each tag to the push's digest; where the registry did not
// check the conditions, it reads them back after the settle delay and
// again just before reporting success.
func (w *tagWriter) moveTags(ctx context.Context, tags []string) error {
	for _, tag := range tags {
		if err := w.move(ctx, tag); err != nil {
			return err
		}
	}
	if len(w.unproven) == 0 {
		return nil
	}
	settle := w.o.tagSettle
	if settle == 0 {
		settle = DefaultTagSettle
	}
	if err := sleep(ctx, settle); err != nil {
		return err
	}
	if err := w.verify(ctx); err != nil {
		return err
	}
	return w.verify(ctx)
}
