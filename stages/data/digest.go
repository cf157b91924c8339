package data

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
)

// digestMagic starts the canonical form, so that a later change of the form
// can never collide with this one.
const digestMagic = "modelci.dev/dataset/v1\n"

// Digest returns "sha256:<hex>" of the dataset's canonical form, which
// depends only on names and numbers, never on how a CSV spelled them
// ("1.50" and "1.5" digest alike; the column position of the target does
// not matter). All integers are unsigned 64-bit little-endian:
//
//	"modelci.dev/dataset/v1\n"
//	len(Features), then for each feature name: len(name), name bytes
//	len(Target), Target bytes
//	Rows()
//	for each row in order: its features' IEEE-754 bits (math.Float64bits),
//	    then the target's bits
//
// Values are hashed bit for bit, so -0 and +0 differ. Digest panics if the
// dataset is malformed (see Validate), as Row does for a bad index.
func (d *Dataset) Digest() string {
	if err := d.Validate(); err != nil {
		panic(fmt.Sprintf("data: digest of %v", err))
	}
	h := sha256.New()
	buf := make([]byte, 0, 64<<10)
	putString := func(s string) {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
		h.Write(buf)
		h.Write([]byte(s))
		buf = buf[:0]
	}
	h.Write([]byte(digestMagic))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(d.Features)))
	for _, f := range d.Features {
		putString(f)
	}
	putString(d.Target)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(d.Rows()))
	p := len(d.Features)
	for i, y := range d.Y {
		if len(buf)+8*(p+1) > cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
		for _, v := range d.X[i*p : (i+1)*p] {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
		buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(y))
	}
	h.Write(buf)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Validate reports ErrShape when X does not hold Rows()·len(Features)
// values. Datasets from Load, Read and Split are always valid.
func (d *Dataset) Validate() error {
	if want := len(d.Y) * len(d.Features); len(d.X) != want {
		return fmt.Errorf("dataset with %d rows and %d features has %d feature values, want %d: %w",
			len(d.Y), len(d.Features), len(d.X), want, ErrShape)
	}
	return nil
}
