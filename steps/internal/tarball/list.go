package tarball

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
)

// List reads a whole tar stream, as `tar -t` would, and counts what it
// holds; a truncated or corrupt archive is an error.
func List(ctx context.Context, r io.Reader) (Stats, error) {
	var st Stats
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, fmt.Errorf("tar entry %d: %w", st.Files+st.Dirs+st.Symlinks+st.Hardlinks+st.Other+1, err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			st.Dirs++
		case tar.TypeSymlink:
			st.Symlinks++
		case tar.TypeLink:
			st.Hardlinks++
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont:
			st.Files++
		case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
			st.Other++
		}
		n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{tr}, buf)
		st.Bytes += n
		if err != nil {
			return st, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
	}
}
