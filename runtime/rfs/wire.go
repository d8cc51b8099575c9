package rfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// The stream, after the handshake (auth.go), is a sequence of frames:
//
//	u32 length of what follows | u8 type | u64 seq | body
//
// From the primary, seq numbers every frame in sending order; the secondary
// applies frames in that order. From the secondary, seq is the frame
// answered (replies, errors) or zero (acks). Bodies of operations are a
// fixed list of varint-encoded fields (see msg) followed by the raw data.

// Operation types, primary to secondary.
const (
	opWrite       = 1  // data at off
	opFsync       = 2  // flags&1: datasync
	opSetattr     = 3  // valid: which of mode, uid, gid, size, atime, mtime
	opAlloc       = 4  // fallocate(flags=mode, off, n)
	opCreate      = 5  // regular file
	opMknod       = 6  // device, fifo, socket
	opMkdir       = 7  //
	opSymlink     = 8  // path2: target
	opUnlink      = 9  //
	opRmdir       = 10 //
	opRename      = 11 // path2: new path; flags: rename2 flags
	opSetxattr    = 12 // name, data, flags
	opRemovexattr = 13 // name
	opZone        = 14 // reintegration: [off, off+n) becomes data (segments) and holes
	opRemoveAll   = 15 // reintegration: remove an extra entry and what is below
	opList        = 16 // reintegration: list a directory (reply)
	opSums        = 17 // reintegration: zone checksums of a file (reply)
	opEnd         = 18 // end of reintegration (reply); data: the new sync state
	opTick        = 19 // the pair is in sync at mtime (persisted by the secondary)
	opBegin       = 20 // start of reintegration; name: the mode
	opNop         = 21 // barrier (reply once everything before is applied)
	opProgress    = 22 // reintegration progress: off bytes copied of n
)

// Answer types, secondary to primary.
const (
	ansAck   = 101 // body: recv, applied
	ansReply = 102 // seq: the request; body: the answer
	ansErr   = 103 // seq: the failed operation; body: errno, text
)

// Setattr valid bits (msg.valid).
const (
	vMode  = 1 << 0
	vUID   = 1 << 1
	vGID   = 1 << 2
	vSize  = 1 << 3
	vAtime = 1 << 4
	vMtime = 1 << 5
	// vKillSUID: clear suid/sgid (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID).
	vKillSUID = 1 << 6
)

const frameHeader = 4 + 1 + 8

// maxFrame bounds what a peer may ask us to allocate.
const maxFrame = 64 << 20

// msg is one operation. Which fields mean something depends on typ.
type msg struct {
	typ   byte
	seq   uint64
	dir   uint8
	path  string
	path2 string
	off   int64
	n     int64
	mode  uint32
	uid   uint32
	gid   uint32
	flags uint32
	rdev  uint64
	atime int64 // ns since the epoch
	mtime int64
	valid uint32
	name  string
	// data follows the fields; on the primary, iov may hold it instead.
	data []byte
	iov  [][]byte
}

func (m *msg) dataLen() int {
	if m.iov == nil {
		return len(m.data)
	}
	n := 0
	for _, b := range m.iov {
		n += len(b)
	}
	return n
}

// encodeHead returns the frame header and the fields; the data is sent
// after it without a copy.
func (m *msg) encodeHead(b []byte) []byte {
	b = append(b[:0], make([]byte, frameHeader)...)
	b = append(b, m.dir)
	b = putStr(b, m.path)
	b = putStr(b, m.path2)
	b = binary.AppendVarint(b, m.off)
	b = binary.AppendVarint(b, m.n)
	b = binary.AppendUvarint(b, uint64(m.mode))
	b = binary.AppendUvarint(b, uint64(m.uid))
	b = binary.AppendUvarint(b, uint64(m.gid))
	b = binary.AppendUvarint(b, uint64(m.flags))
	b = binary.AppendUvarint(b, m.rdev)
	b = binary.AppendVarint(b, m.atime)
	b = binary.AppendVarint(b, m.mtime)
	b = binary.AppendUvarint(b, uint64(m.valid))
	b = putStr(b, m.name)
	binary.BigEndian.PutUint32(b[0:4], uint32(len(b)-4+m.dataLen()))
	b[4] = m.typ
	binary.BigEndian.PutUint64(b[5:13], m.seq)
	return b
}

func putStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeMsg parses the body of an operation frame; data aliases body.
func decodeMsg(typ byte, seq uint64, body []byte) (*msg, error) {
	d := decoder{b: body}
	m := &msg{typ: typ, seq: seq}
	m.dir = d.u8()
	m.path = d.str()
	m.path2 = d.str()
	m.off = d.varint()
	m.n = d.varint()
	m.mode = uint32(d.uvarint())
	m.uid = uint32(d.uvarint())
	m.gid = uint32(d.uvarint())
	m.flags = uint32(d.uvarint())
	m.rdev = d.uvarint()
	m.atime = d.varint()
	m.mtime = d.varint()
	m.valid = uint32(d.uvarint())
	m.name = d.str()
	if d.err != nil {
		return nil, fmt.Errorf("operation %d seq %d: %w", typ, seq, d.err)
	}
	m.data = d.b
	return m, nil
}

type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated frame")

func (d *decoder) u8() uint8 {
	if len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// readFrame reads one frame; the body is freshly allocated.
func readFrame(r io.Reader, hdr []byte) (typ byte, seq uint64, body []byte, err error) {
	if _, err = io.ReadFull(r, hdr[:frameHeader]); err != nil {
		return
	}
	n := binary.BigEndian.Uint32(hdr[0:4])
	if n < 9 || n > maxFrame {
		err = fmt.Errorf("frame of %d bytes: not a replication stream", n)
		return
	}
	typ = hdr[4]
	seq = binary.BigEndian.Uint64(hdr[5:13])
	body = make([]byte, n-9)
	_, err = io.ReadFull(r, body)
	return
}

// writeFrame sends a small frame (answers).
func writeFrame(w io.Writer, typ byte, seq uint64, body []byte) error {
	b := make([]byte, frameHeader, frameHeader+len(body))
	binary.BigEndian.PutUint32(b[0:4], uint32(9+len(body)))
	b[4] = typ
	binary.BigEndian.PutUint64(b[5:13], seq)
	_, err := w.Write(append(b, body...))
	return err
}

// sendMsg writes one operation with a single writev where possible.
func sendMsg(c net.Conn, head []byte, m *msg) error {
	if m.iov == nil && len(m.data) == 0 {
		_, err := c.Write(head)
		return err
	}
	bufs := net.Buffers{head}
	if m.iov != nil {
		bufs = append(bufs, m.iov...)
	} else {
		bufs = append(bufs, m.data)
	}
	_, err := bufs.WriteTo(c)
	return err
}
