package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/modelci/modelci/stages/oci"
)

// blob is one blob to upload: its digest and size, how to read it from its
// start, and the repository of the same registry it can be mounted from
// ("" for none).
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
	from   string
}

// blobsOf lists the distributable blobs of t, each once: the config and
// layers of every image, through indexes. A layer pulled from dst's
// registry (a remote.MountableLayer), or any blob when mountFrom names a
// repository of it, is mounted rather than uploaded where the registry
// allows.
func blobsOf(t remote.Taggable, dst name.Repository, mountFrom string) ([]blob, error) {
	var (
		out  []blob
		seen = map[v1.Hash]bool{}
	)
	add := func(l v1.Layer) error {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		if seen[d] {
			return nil
		}
		seen[d] = true
		size, err := l.Size()
		if err != nil {
			return err
		}
		from := mountFrom
		if ml, ok := l.(*remote.MountableLayer); ok && ml.Reference.Context().RegistryStr() == dst.RegistryStr() {
			from = ml.Reference.Context().RepositoryStr()
		}
		out = append(out, blob{digest: d, size: size, open: l.Compressed, from: from})
		return nil
	}
	var walk func(a any) error
	walk = func(a any) error {
		switch a := a.(type) {
		case v1.ImageIndex:
			children, err := partial.Manifests(a)
			if err != nil {
				return err
			}
			for _, c := range children {
				if err := walk(c); err != nil {
					return err
				}
			}
		case v1.Image:
			cl, err := partial.ConfigLayer(a)
			if err != nil {
				return err
			}
			if err := add(cl); err != nil {
				return err
			}
			ls, err := a.Layers()
			if err != nil {
				return err
			}
			for _, l := range ls {
				mt, err := l.MediaType()
				if err != nil {
					return err
				}
				if !mt.IsDistributable() {
					continue // foreign layers stay where their URLs say
				}
				if err := add(l); err != nil {
					return err
				}
			}
		case v1.Layer:
			return add(a)
		}
		return nil
	}
	if err := walk(t); err != nil {
		return nil, err
	}
	return out, nil
}

// uploadBlobs uploads every blob the registry lacks, jobs at a time; the
// first failure stops the others.
func (c *conn) uploadBlobs(ctx context.Context, blobs []blob, p *tracker) error {
	jobs := c.access.Jobs
	if jobs <= 0 {
		jobs = oci.DefaultJobs
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for _, b := range blobs {
		g.Go(func() error {
			if err := c.uploadBlob(ctx, b, p); err != nil {
				return fmt.Errorf("blob %s: %w", b.digest, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// errUploadGone: the registry no longer knows the upload, or cannot say
// where it stands; it starts over.
var errUploadGone = errors.New("upload session lost")

// uploadBlob uploads b unless the registry has it (or mounts it), per the
// distribution API's chunked upload: POST, PATCH with Content-Range, at
// most the chunk size each, then PUT ?digest=.
//
// Each step (the HEAD, the POST, the PATCH at an offset, the PUT) is tried
// at most the access's attempts times, with its backoff between tries; so
// the whole is bounded. A step the registry answered with a transient
// error (429, 5xx) is sent again as it was. After a connection that broke
// or timed out mid-request, the registry is asked where the upload stands
// (GET of the upload URL, its Range), and the bytes are sent from there, so
// that what it acknowledged is not sent again; where the registry lost the
// upload (404, a digest that does not match), it starts over.
func (c *conn) uploadBlob(ctx context.Context, b blob, p *tracker) error {
	attempts, _, _ := c.access.Retry()
	chunk := c.access.Chunk()
	var (
		loc      string // the upload, "" for none yet
		off      int64  // the bytes of it the registry acknowledged
		known    = true // off is what the registry said; false: ask it
		failures = map[string]int{}
		sent     atomic.Int64 // bytes of b reported to p (the transport reads bodies on its own goroutine)
	)
	report := func(n int64) { sent.Add(n); p.add(n) }
	attempt := func() (err error) {
		if loc != "" && !known {
			o, err := c.uploadStatus(ctx, loc)
			switch {
			case errors.Is(err, errUploadGone):
				loc = ""
			case err != nil:
				return &stepError{"status", err}
			default:
				off, known = o, true
			}
		}
		if loc == "" {
			exists, err := c.blobExists(ctx, b.digest)
			if err != nil {
				return &stepError{"exists", err}
			}
			if exists {
				return nil
			}
			l, mounted, err := c.startUpload(ctx, b)
			if err != nil {
				return &stepError{"start", err}
			}
			if mounted {
				return nil
			}
			loc, off, known = l, 0, true
		}
		report(off - sent.Load())
		if loc, err = c.sendFrom(ctx, b, loc, &off, chunk, report); err != nil {
			return err
		}
		if err := c.commit(ctx, loc, b.digest); err != nil {
			return &stepError{"commit", err}
		}
		return nil
	}
	for {
		err := attempt()
		if err == nil {
			report(b.size - sent.Load())
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		step := "?"
		var se *stepError
		if errors.As(err, &se) {
			step = se.step
		}
		switch s := statusOf(err); {
		case s == http.StatusNotFound && loc != "" && (step == "commit" || strings.HasPrefix(step, "patch")),
			hasCode(err, transport.DigestInvalidErrorCode, transport.BlobUploadUnknownErrorCode):
			// The upload is lost, or holds other bytes than ours.
			loc = ""
		case s == http.StatusRequestedRangeNotSatisfiable:
			known = false
		case s != 0 && oci.Retryable(err):
			// The registry answered: the request is sent again as it was.
		case oci.Retryable(err):
			// The connection broke or timed out: ask where the upload stands.
			known = false
		default:
			return err
		}
		report(off - sent.Load()) // back to what was acknowledged
		failures[step]++
		if failures[step] >= attempts {
			return err
		}
		if err := sleep(ctx, c.access.BackoffFor(failures[step])); err != nil {
			return err
		}
	}
}

// stepError is a failed step of a blob upload; the step names it for the
// count of its attempts.
type stepError struct {
	step string
	err  error
}

func (e *stepError) Error() string { return e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// blobExists HEADs the blob.
func (c *conn) blobExists(ctx context.Context, d v1.Hash) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, c.url("/blobs/"+d.String()), nil)
	if err != nil {
		return false, err
	}
	resp, err := c.do(req, http.StatusOK, http.StatusNotFound)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// startUpload POSTs an upload (a mount when b has a source): the upload's
// URL, or mounted when the registry took the mount.
func (c *conn) startUpload(ctx context.Context, b blob) (loc string, mounted bool, err error) {
	u := c.url("/blobs/uploads/")
	if b.from != "" && b.from != c.repo.RepositoryStr() {
		u += "?" + url.Values{"mount": {b.digest.String()}, "from": {b.from}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := c.do(req, http.StatusCreated, http.StatusAccepted)
	if err != nil {
		return "", false, err
	}
	if err := drain(resp); err != nil {
		return "", false, err
	}
	if resp.StatusCode == http.StatusCreated {
		return "", true, nil
	}
	l, err := resp.Location()
	if err != nil {
		return "", false, fmt.Errorf("POST %s: 202 without a usable Location: %w", u, err)
	}
	return l.String(), false, nil
}

// uploadStatus asks where the upload stands: the bytes the registry holds
// (its Range header, "0-<last>"). A registry that no longer knows the
// upload, or cannot say, gives errUploadGone.
func (c *conn) uploadStatus(ctx context.Context, loc string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req, http.StatusNoContent, http.StatusOK)
	if err != nil {
		if s := statusOf(err); s >= 400 && s < 500 && s != http.StatusTooManyRequests && s != http.StatusRequestTimeout &&
			s != http.StatusUnauthorized && s != http.StatusForbidden {
			return 0, fmt.Errorf("%w: %w", errUploadGone, err)
		}
		return 0, err
	}
	if err := drain(resp); err != nil {
		return 0, err
	}
	end, ok := parseRange(resp.Header.Get("Range"))
	if !ok {
		return 0, fmt.Errorf("%w: GET %s: no Range in the answer", errUploadGone, redact(loc))
	}
	return end, nil
}

// parseRange reads a Range header of an upload, "0-<last>" (or
// "bytes=0-<last>"), as the number of bytes held. "0-0" is read as none:
// distribution writes it for an empty upload as for one of a byte, and
// resending a byte costs less than skipping one.
func parseRange(v string) (int64, bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "bytes=")
	a, b, ok := strings.Cut(v, "-")
	if !ok || a != "0" {
		return 0, false
	}
	last, err := strconv.ParseInt(b, 10, 64)
	if err != nil || last < 0 {
		return 0, false
	}
	if last == 0 {
		return 0, true
	}
	return last + 1, true
}

// sendFrom PATCHes b's bytes from *off to its end, a chunk at a time,
// advancing *off as each is acknowledged; it returns the upload URL the
// registry gave last.
func (c *conn) sendFrom(ctx context.Context, b blob, loc string, off *int64, chunk int64, report func(int64)) (string, error) {
	if *off >= b.size {
		return loc, nil
	}
	rc, err := b.open()
	if err != nil {
		return loc, &stepError{"read", fmt.Errorf("read blob: %w", err)}
	}
	defer rc.Close()
	if *off > 0 {
		if _, err := io.CopyN(io.Discard, rc, *off); err != nil {
			return loc, &stepError{"read", fmt.Errorf("read blob to byte %d: %w", *off, err)}
		}
	}
	for *off < b.size {
		n := b.size - *off
		if chunk > 0 {
			n = min(n, chunk)
		}
		body := &counting{r: io.LimitReader(rc, n), report: report}
		req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, body)
		if err != nil {
			return loc, err
		}
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", *off, *off+n-1))
		step := fmt.Sprintf("patch %d", *off)
		resp, err := c.do(req, http.StatusAccepted, http.StatusNoContent)
		if err != nil {
			return loc, &stepError{step, err}
		}
		if err := drain(resp); err != nil {
			return loc, &stepError{step, err}
		}
		if body.n != n {
			return loc, fmt.Errorf("read blob: %d bytes of a %d-byte chunk: %w", body.n, n, io.ErrUnexpectedEOF)
		}
		*off += n
		if l, err := resp.Location(); err == nil {
			loc = l.String()
		}
	}
	return loc, nil
}

// commit PUTs ?digest= on the upload, ending it.
func (c *conn) commit(ctx context.Context, loc string, d v1.Hash) error {
	u, err := url.Parse(loc)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.do(req, http.StatusCreated, http.StatusNoContent, http.StatusAccepted)
	if err != nil {
		return err
	}
	return drain(resp)
}

func redact(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	u.RawQuery = ""
	return u.String()
}

// counting reports the bytes read through it.
type counting struct {
	r      io.Reader
	n      int64
	report func(int64)
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.report(int64(n))
	return n, err
}

// tracker sums the bytes of a push done so far for its progress updates.
type tracker struct {
	mu       sync.Mutex
	total    int64
	complete int64
	updates  chan<- v1.Update // nil: nobody listens
	closed   bool
}

func (p *tracker) add(n int64) {
	if p == nil || p.updates == nil || n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		// A transport still reading a request body the registry answered
		// early.
		return
	}
	p.complete += n
	p.updates <- v1.Update{Total: p.total, Complete: p.complete}
}

// finish sends the last update (the error, or everything done) and closes
// the updates.
func (p *tracker) finish(err error) {
	if p.updates == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.updates <- v1.Update{Error: err}
	} else {
		p.updates <- v1.Update{Total: p.total, Complete: p.total}
	}
	p.closed = true
	close(p.updates)
}
