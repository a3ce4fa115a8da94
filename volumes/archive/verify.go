package archive

import (
	"encoding/hex"
	"errors"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// verifier hashes a layer stream as it is read and turns its EOF into an
// error if the content is not what the config says (A1). A verifier is
// not safe for concurrent use.
type verifier struct {
	rc   io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64 // expected length, or -1
	n    int64 // bytes read so far
	err  error // sticky: the mismatch, or io.EOF once verified
	path string
	what string // "layer 2 (sha256:...) of image \"x\"", for errors
}

var _ io.ReadCloser = (*verifier)(nil)

// openVerified returns the uncompressed stream of l, checked against want
// and size.
func (a *Archive) openVerified(l v1.Layer, want v1.Hash, size int64, what string) (io.ReadCloser, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, &Error{Path: a.Path, Err: within(what, err)}
	}
	return a.verify(rc, want, size, what)
}

// verify wraps rc so that reading it checks want and size.
func (a *Archive) verify(rc io.ReadCloser, want v1.Hash, size int64, what string) (io.ReadCloser, error) {
	h, err := v1.Hasher(want.Algorithm)
	if err != nil {
		rc.Close()
		return nil, &Error{Path: a.Path, Err: errf(ErrUnsupported, "%s: %v", what, err)}
	}
	return &verifier{rc: rc, h: h, want: want, size: size, path: a.Path, what: what}, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = v.mismatch("more than %d bytes", v.size)
		return n, v.err
	}
	if errors.Is(err, io.EOF) {
		got := v.want.Algorithm + ":" + hex.EncodeToString(v.h.Sum(nil))
		switch {
		case got != v.want.String():
			v.err = v.mismatch("content is %s", got)
		case v.size >= 0 && v.n != v.size:
			v.err = v.mismatch("%d bytes, want %d", v.n, v.size)
		default:
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifier) mismatch(format string, args ...any) error {
	return &Error{Path: v.path, Err: errf(ErrDigestMismatch, "%s: "+format, append([]any{v.what}, args...)...)}
}

func (v *verifier) Close() error { return v.rc.Close() }
