package data

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	readBufSize = 1 << 20  // the read buffer, and the counting pass's
	maxLineSize = 64 << 20 // a longer line is an error rather than an unbounded buffer
	firstChunk  = 1 << 10  // values; chunks double up to maxChunk
	maxChunk    = 1 << 17  // values (1 MiB of floats): the most a chunk wastes
	ctxEvery    = 1 << 12  // lines between context checks
)

// Load reads the CSV file at path; see Read for the format.
func Load(ctx context.Context, path, target string) (*Dataset, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load dataset: %w", err)
	}
	defer f.Close()
	return read(ctx, f, path, target)
}

// Read parses CSV from r; name is the file name used in errors.
//
// The first non-empty line is the header. Every column except target is a
// feature, kept in header order. Empty lines are skipped; CRLF line ends, a
// leading UTF-8 byte order mark and spaces or tabs around fields are
// accepted. Fields may be double-quoted ("" escapes a quote) but may not
// span lines.
//
// A cell, stripped of its quotes and of spaces and tabs around it, is a
// number when strconv.ParseFloat reads it (plain decimals take a faster
// exact path), and must then be finite; empty; or otherwise text, which
// must be valid UTF-8 without a carriage return. Target cells must be
// numbers; feature cells may be any of the three.
//
// Problems are reported as *ParseError (file:line:column) wrapping one of
// the sentinel errors of this package.
//
// Memory: rows are parsed straight into float64 storage, never holding the
// input; text cells are kept once per distinct value and column. Storage
// grows only from rows actually present: when r can seek (a file, a
// bytes.Reader), a first pass counts its line ends and commas, without
// storing anything, and the storage is sized for the rows they allow, so
// the result costs about its own size; a size r declares is never trusted
// for more than the read buffer. Otherwise rows go into chunks that double
// from small and are copied once into exact-size slices, about twice the
// result at peak.
func Read(r io.Reader, name, target string) (*Dataset, error) {
	return read(context.Background(), r, name, target)
}

type parser struct {
	lines  lineReader
	name   string
	header []string
	target int // index of the target column
	row    []float64
	// text is, per column of the row just parsed, the text of a text cell
	// and "" otherwise; hasText says whether there is one.
	text    []string
	hasText bool
	intern  []map[string]string // per column: one copy of each text
	unq     []byte              // scratch for unquoting
}

func (p *parser) errorf(line, col int, err error) error {
	return &ParseError{File: p.name, Line: line, Column: col, Err: err}
}

// counts is what the counting pass found from the reader's position on.
type counts struct {
	bytes, newlines, commas int64
	last                    byte // the last byte counted
}

// count reads r to its end (or to a line longer than the parser accepts,
// where parsing must stop anyway), counting line ends and commas, and seeks
// back. ok is false when r cannot seek, or a read fails (the parser then
// meets the failure itself); err when r cannot return to where it was.
func count(ctx context.Context, r io.Reader, buf []byte) (c counts, ok bool, err error) {
	rs, isSeeker := r.(io.ReadSeeker)
	if !isSeeker {
		return c, false, nil
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return c, false, nil // a pipe or terminal
	}
	ok = true
	var run int64 // bytes since the last line end
	for empty := 0; ; {
		if ctx.Err() != nil || empty >= 100 { // cancelled, or a reader making no progress
			ok = false
			break
		}
		n, rerr := rs.Read(buf)
		if n == 0 && rerr == nil {
			empty++
		}
		b := buf[:n]
		if n > 0 {
			c.bytes += int64(n)
			c.commas += int64(bytes.Count(b, []byte{','}))
			if nl := bytes.Count(b, []byte{'\n'}); nl > 0 {
				c.newlines += int64(nl)
				run = int64(n - 1 - bytes.LastIndexByte(b, '\n'))
			} else {
				run += int64(n)
			}
			c.last = b[n-1]
		}
		if run > maxLineSize || rerr == io.EOF {
			break
		}
		if rerr != nil {
			ok = false
			break
		}
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return c, false, fmt.Errorf("rewind after counting rows: %w", err)
	}
	return c, ok, nil
}

// bufferSize is the read buffer for r: readBufSize, or less for a seekable
// r with less left, +1 so that one read also sees the end.
func bufferSize(r io.Reader) int {
	rs, ok := r.(io.Seeker)
	if !ok {
		return readBufSize
	}
	cur, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return readBufSize
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if _, err2 := rs.Seek(cur, io.SeekStart); err != nil || err2 != nil || end < cur {
		return readBufSize
	}
	if left := end - cur; left < readBufSize {
		return max(int(left)+1, 512)
	}
	return readBufSize
}

func read(ctx context.Context, r io.Reader, name, target string) (*Dataset, error) {
	buf := make([]byte, bufferSize(r))
	cnt, counted, err := count(ctx, r, buf)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	p := &parser{
		lines: lineReader{r: r, buf: buf},
		name:  name,
	}
	line, err := p.nextLine()
	if err == io.EOF {
		return nil, p.errorf(p.lines.eofLine(), 1, ErrEmpty)
	}
	if err != nil {
		return nil, err
	}
	headerCommas := int64(bytes.Count(line, []byte{','}))
	if err := p.parseHeader(line, target); err != nil {
		return nil, err
	}
	ncols := len(p.header)
	nfeat := ncols - 1
	p.row = make([]float64, ncols)
	p.text = make([]string, ncols)
	p.intern = make([]map[string]string, ncols)

	// rows is how many rows the counted line ends and commas leave room
	// for: what the storage is sized for.
	rows := 0
	if counted {
		lines := cnt.newlines
		if cnt.bytes > 0 && cnt.last != '\n' {
			lines++
		}
		est := lines - int64(p.lines.line)
		if ncols > 1 {
			est = min(est, (cnt.commas-headerCommas)/int64(ncols-1))
		}
		if est > 0 && est <= math.MaxInt32 {
			rows = int(est)
		}
	}
	var xs, ys store[float64]
	var ls store[int32]
	if rows > 0 {
		xs.presize(rows * nfeat)
		ys.presize(rows)
		ls.presize(rows)
	}
	// texts holds the text columns by feature index; active lists the
	// features that have one.
	var texts [][]string
	var active []int
	for n := 0; ; n++ {
		if n%ctxEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
		}
		line, err := p.nextLine()
		if err == io.EOF {
			if n == 0 {
				return nil, p.errorf(p.lines.eofLine(), 1, ErrNoRows)
			}
			break
		}
		if err != nil {
			return nil, err
		}
		if err := p.parseRow(line); err != nil {
			return nil, err
		}
		xs.add(p.row[:p.target])
		xs.add(p.row[p.target+1:])
		ys.add(p.row[p.target : p.target+1])
		lineNo := int32(0)
		if p.lines.line <= math.MaxInt32 {
			lineNo = int32(p.lines.line)
		}
		ls.add([]int32{lineNo})
		if p.hasText {
			for c, s := range p.text {
				if s == "" {
					continue
				}
				j := c
				if c > p.target {
					j--
				}
				if texts == nil {
					texts = make([][]string, nfeat)
				}
				if texts[j] == nil {
					texts[j] = make([]string, n, max(rows, n+1))
					active = append(active, j)
				}
			}
		}
		for _, j := range active {
			c := j
			if j >= p.target {
				c++
			}
			texts[j] = append(texts[j], p.text[c])
		}
	}
	features := make([]string, 0, nfeat)
	features = append(features, p.header[:p.target]...)
	features = append(features, p.header[p.target+1:]...)
	return &Dataset{
		Features:  features,
		Target:    p.header[p.target],
		X:         xs.finish(),
		Y:         ys.finish(),
		Text:      texts,
		File:      name,
		Lines:     ls.finish(),
		targetCol: p.target + 1,
	}, nil
}

// nextLine returns the next non-empty line, with a byte order mark removed
// from the first line of the input, or io.EOF.
func (p *parser) nextLine() ([]byte, error) {
	for {
		line, err := p.lines.next()
		if err == errLineTooLong {
			return nil, p.errorf(p.lines.line+1, 1, fmt.Errorf("%w: line longer than %d MiB", ErrSyntax, maxLineSize>>20))
		}
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p.name, err)
		}
		if p.lines.line == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		if len(line) > 0 {
			return line, nil
		}
	}
}

func (p *parser) parseHeader(line []byte, target string) error {
	lineNo := p.lines.line
	seen := map[string]int{}
	for pos, col := 0, 1; pos >= 0; col++ {
		f, next, quoted, err := nextField(line, pos)
		if err != nil {
			return p.errorf(lineNo, col, err)
		}
		if !quoted && bytes.IndexByte(f, '"') >= 0 {
			return p.errorf(lineNo, col, fmt.Errorf("%w: bare quote in unquoted column name %q", ErrSyntax, f))
		}
		if quoted {
			f = bytes.ReplaceAll(f, []byte(`""`), []byte(`"`))
		}
		if bytes.IndexByte(f, '\r') >= 0 {
			// Most likely a file with old Mac line ends, read as one line.
			return p.errorf(lineNo, col, fmt.Errorf("%w: carriage return in column name %s", ErrSyntax, quoteCell(f)))
		}
		name := string(f)
		if name == "" {
			return p.errorf(lineNo, col, ErrEmptyColumn)
		}
		if first, ok := seen[name]; ok {
			return p.errorf(lineNo, col, fmt.Errorf("%w: %q repeats column %d", ErrDuplicateColumn, name, first))
		}
		seen[name] = col
		p.header = append(p.header, name)
		pos = next
	}
	t, ok := seen[target]
	if !ok {
		return p.errorf(lineNo, 1, fmt.Errorf("%w: no column %q; columns are %s", ErrMissingTarget, target, listNames(p.header)))
	}
	p.target = t - 1
	return nil
}

// listNames quotes names for an error message, eliding the middle of long lists.
func listNames(names []string) string {
	const most = 30
	var b strings.Builder
	for i, n := range names {
		if i == most {
			fmt.Fprintf(&b, " … (%d more)", len(names)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	return b.String()
}

// parseRow parses line into p.row and p.text or reports the first bad
// field.
func (p *parser) parseRow(line []byte) error {
	lineNo := p.lines.line
	ncols := len(p.header)
	p.hasText = false
	col := 0
	for pos := 0; pos >= 0; col++ {
		if col == ncols {
			return p.errorf(lineNo, col+1, fmt.Errorf("%w: row has %d fields, header has %d", ErrRagged, countFields(line), ncols))
		}
		f, next, quoted, err := nextField(line, pos)
		if err != nil {
			return p.errorf(lineNo, col+1, err)
		}
		pos = next
		if quoted && bytes.Contains(f, []byte(`""`)) {
			p.unq = append(p.unq[:0], f...)
			p.unq = bytes.ReplaceAll(p.unq, []byte(`""`), []byte(`"`))
			f = p.unq
		}
		f = trimSpace(f)
		p.text[col] = ""
		if len(f) == 0 {
			if col == p.target {
				return p.errorf(lineNo, col+1, fmt.Errorf("cell %s in column %q: %w (the target column takes numbers only)", quoteCell(f), p.header[col], ErrNotNumber))
			}
			p.row[col] = math.NaN()
			continue
		}
		v, err := parseNumber(f)
		switch {
		case err == nil:
			p.row[col] = v
		case !errors.Is(err, ErrNotNumber):
			return p.errorf(lineNo, col+1, fmt.Errorf("cell %s in column %q: %w", quoteCell(f), p.header[col], err))
		case col == p.target:
			return p.errorf(lineNo, col+1, fmt.Errorf("cell %s in column %q: %w (the target column takes numbers only)", quoteCell(f), p.header[col], err))
		case bytes.IndexByte(f, '\r') >= 0:
			return p.errorf(lineNo, col+1, fmt.Errorf("%w: carriage return in cell %s in column %q", ErrSyntax, quoteCell(f), p.header[col]))
		case !utf8.Valid(f):
			return p.errorf(lineNo, col+1, fmt.Errorf("%w: cell %s in column %q is not valid UTF-8", ErrSyntax, quoteCell(f), p.header[col]))
		default:
			p.row[col] = math.NaN()
			p.text[col] = p.internText(col, f)
			p.hasText = true
		}
	}
	if col < ncols {
		return p.errorf(lineNo, col+1, fmt.Errorf("%w: row has %d fields, header has %d", ErrRagged, col, ncols))
	}
	return nil
}

// internText returns f as a string, one copy per distinct text and column.
func (p *parser) internText(col int, f []byte) string {
	m := p.intern[col]
	if m == nil {
		m = make(map[string]string)
		p.intern[col] = m
	}
	if s, ok := m[string(f)]; ok {
		return s
	}
	s := string(f)
	m[s] = s
	return s
}

func trimSpace(f []byte) []byte {
	for len(f) > 0 && isSpace(f[0]) {
		f = f[1:]
	}
	for len(f) > 0 && isSpace(f[len(f)-1]) {
		f = f[:len(f)-1]
	}
	return f
}

// countFields counts fields for an error message, up to the first malformed one.
func countFields(line []byte) int {
	n := 0
	for pos := 0; pos >= 0; n++ {
		_, next, _, err := nextField(line, pos)
		if err != nil {
			return n + 1
		}
		pos = next
	}
	return n
}

// quoteCell quotes a cell for an error message, shortening a long one.
func quoteCell(f []byte) string {
	const most = 40
	if len(f) > most {
		return strconv.Quote(string(f[:most])) + "…"
	}
	return strconv.Quote(string(f))
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

// nextField returns the field starting at line[pos:] and the position after
// its comma, or next = -1 for the last field. Unquoted fields come back
// without surrounding spaces; quoted ones without their quotes and with ""
// escapes left in place.
func nextField(line []byte, pos int) (field []byte, next int, quoted bool, err error) {
	i := pos
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	if i < len(line) && line[i] == '"' {
		j := i + 1
		for {
			k := bytes.IndexByte(line[j:], '"')
			if k < 0 {
				return nil, 0, true, fmt.Errorf("%w: unterminated quoted field (quoted fields may not span lines)", ErrSyntax)
			}
			j += k
			if j+1 < len(line) && line[j+1] == '"' {
				j += 2
				continue
			}
			break
		}
		field = line[i+1 : j]
		k := j + 1
		for k < len(line) && isSpace(line[k]) {
			k++
		}
		if k == len(line) {
			return field, -1, true, nil
		}
		if line[k] != ',' {
			return nil, 0, true, fmt.Errorf("%w: unexpected %q after quoted field", ErrSyntax, line[k])
		}
		return field, k + 1, true, nil
	}
	end, next := len(line), -1
	for k := i; k < len(line); k++ {
		if line[k] == ',' {
			end, next = k, k+1
			break
		}
	}
	for end > i && isSpace(line[end-1]) {
		end--
	}
	return line[i:end], next, false, nil
}

// parseNumber parses a trimmed cell as a finite float64.
func parseNumber(f []byte) (float64, error) {
	for len(f) > 0 && isSpace(f[0]) {
		f = f[1:]
	}
	for len(f) > 0 && isSpace(f[len(f)-1]) {
		f = f[:len(f)-1]
	}
	if len(f) == 0 {
		return 0, ErrNotNumber
	}
	if v, ok := parseDecimal(f); ok {
		return v, nil
	}
	v, err := strconv.ParseFloat(string(f), 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) && math.IsInf(v, 0) {
			return 0, fmt.Errorf("overflows float64: %w", ErrNotFinite)
		}
		return 0, ErrNotNumber
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, ErrNotFinite
	}
	return v, nil
}

var errLineTooLong = errors.New("line too long")

// lineReader yields lines from r without their "\n" or "\r\n", reusing
// one buffer that grows only for lines longer than it.
type lineReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // unread bytes are buf[start:end]
	err        error // the reader's error, once it has returned one
	line       int   // number of the line last returned
	consumed   int64 // bytes returned so far, terminators included
	partial    bool  // the last line returned had no "\n" (it ended the input)
}

// eofLine is the line number of the end of the input, for errors there.
func (s *lineReader) eofLine() int {
	if s.partial {
		return s.line
	}
	return s.line + 1
}

func (s *lineReader) next() ([]byte, error) {
	scan := s.start
	empty := 0
	for {
		if i := bytes.IndexByte(s.buf[scan:s.end], '\n'); i >= 0 {
			line := s.buf[s.start : scan+i]
			s.consumed += int64(scan + i + 1 - s.start)
			s.start = scan + i + 1
			s.line++
			return trimCR(line), nil
		}
		if s.err != nil {
			if s.err != io.EOF {
				return nil, s.err
			}
			if s.start == s.end {
				return nil, io.EOF
			}
			line := s.buf[s.start:s.end]
			s.consumed += int64(s.end - s.start)
			s.start = s.end
			s.line++
			s.partial = true
			return trimCR(line), nil
		}
		scan = s.end
		if s.start > 0 {
			copy(s.buf, s.buf[s.start:s.end])
			s.end -= s.start
			scan -= s.start
			s.start = 0
		}
		if s.end == len(s.buf) {
			if len(s.buf) >= maxLineSize {
				return nil, errLineTooLong
			}
			nb := make([]byte, min(2*len(s.buf), maxLineSize))
			copy(nb, s.buf[:s.end])
			s.buf = nb
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
		} else if n == 0 {
			if empty++; empty >= 100 {
				s.err = io.ErrNoProgress
			}
		}
	}
}

func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// store collects values in chunks so that growing never copies; finish
// copies them once into an exact-size slice.
type store[T any] struct {
	chunks [][]T
	cur    []T
	n      int // values in chunks
	next   int // capacity of the next chunk
}

// presize makes the first chunk hold n values, so that a good estimate
// needs no copy at the end.
func (s *store[T]) presize(n int) {
	s.cur = make([]T, 0, n)
	s.next = maxChunk
}

func (s *store[T]) add(v []T) {
	for len(v) > 0 {
		if len(s.cur) == cap(s.cur) {
			s.grow()
		}
		k := min(len(v), cap(s.cur)-len(s.cur))
		s.cur = append(s.cur, v[:k]...)
		v = v[k:]
	}
}

func (s *store[T]) grow() {
	if s.cur != nil {
		s.chunks = append(s.chunks, s.cur)
		s.n += len(s.cur)
	}
	if s.next == 0 {
		s.next = firstChunk
	}
	s.cur = make([]T, 0, s.next)
	s.next = min(2*s.next, maxChunk)
}

func (s *store[T]) finish() []T {
	total := s.n + len(s.cur)
	// Keep a single chunk whose unused tail is small; the full slice
	// expression makes a caller's append reallocate rather than write there.
	if len(s.chunks) == 0 && cap(s.cur)-total <= total/16+4096 {
		return s.cur[:total:total]
	}
	out := make([]T, total)
	off := 0
	for i, c := range s.chunks {
		off += copy(out[off:], c)
		s.chunks[i] = nil
	}
	copy(out[off:], s.cur)
	s.cur = nil
	return out
}
