package artifact

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

var (
	ageMagic   = []byte("age-encryption.org/v1\n")
	armorMagic = []byte("-----BEGIN AGE ENCRYPTED FILE-----")
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	gzipMagic  = []byte{0x1f, 0x8b}
)

// Open returns the plaintext, decompressed stream of an artifact. It
// detects age encryption (binary or armored) and zstd/gzip compression by
// their magic bytes, so it also reads files made by the age, zstd and gzip
// CLIs. Errors in the stream (bad MAC, truncation) surface from Read.
func Open(path string, opts ReadOptions) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &readCloser{Reader: r, close: f.Close}, nil
}

// NewReader wraps src with decryption and decompression as detected.
func NewReader(src io.Reader, opts ReadOptions) (io.ReadCloser, error) {
	r, err := DecryptReader(src, opts)
	if err != nil {
		return nil, err
	}
	return Decompress(r)
}

// DecryptReader removes the age layer when src has one (binary or armored)
// and passes anything else through unchanged.
func DecryptReader(src io.Reader, opts ReadOptions) (io.Reader, error) {
	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(len(armorMagic))
	if !bytes.HasPrefix(head, ageMagic) && !bytes.HasPrefix(head, armorMagic) {
		return br, nil
	}
	ids, err := identities(opts)
	if err != nil {
		return nil, err
	}
	var in io.Reader = br
	if bytes.HasPrefix(head, armorMagic) {
		in = armor.NewReader(br)
	}
	dr, err := age.Decrypt(in, ids...)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return bufio.NewReaderSize(dr, 64<<10), nil
}

// Decompress detects zstd or gzip by magic and decodes; other data passes through.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	head, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(0))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return &readCloser{Reader: zr, close: func() error { zr.Close(); return nil }}, nil
	case bytes.HasPrefix(head, gzipMagic):
		gr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return gr, nil
	}
	return io.NopCloser(br), nil
}

// Encrypted reports whether a file starts with an age header.
func Encrypted(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, len(armorMagic))
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	return bytes.HasPrefix(head, ageMagic) || bytes.HasPrefix(head, armorMagic), nil
}

func identities(opts ReadOptions) ([]age.Identity, error) {
	var ids []age.Identity
	if opts.IdentityFile != "" {
		f, err := os.Open(opts.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("identity: %w", err)
		}
		defer f.Close()
		parsed, err := age.ParseIdentities(f)
		if err != nil {
			return nil, fmt.Errorf("identity %s: %w", opts.IdentityFile, err)
		}
		ids = append(ids, parsed...)
	}
	if opts.PassphraseFile != "" {
		pass, err := readFirstLine(opts.PassphraseFile)
		if err != nil {
			return nil, err
		}
		id, err := age.NewScryptIdentity(pass)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil, errors.New("artifact is age-encrypted: give identity_file or passphrase_file")
	}
	return ids, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error {
	if c, ok := r.Reader.(io.Closer); ok {
		c.Close()
	}
	return r.close()
}
