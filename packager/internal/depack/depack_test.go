package depack

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
)

var (
	testSPS = []byte{0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8}
	testPPS = []byte{0x68, 0xce, 0x3c, 0x80}
)

func idr(n int) []byte {
	b := make([]byte, n)
	b[0] = 0x65
	for i := 1; i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

func nonIDR(n int) []byte {
	b := idr(n)
	b[0] = 0x41
	return b
}

// packetize makes RTP packets of one access unit with pion's payloader
// (single NAL units, STAP-A for the small parameter sets, FU-A for the rest).
func packetize(seq *uint64, ts uint32, nalus ...[]byte) []Packet {
	var annexB []byte
	for _, n := range nalus {
		annexB = append(annexB, 0, 0, 0, 1)
		annexB = append(annexB, n...)
	}
	payloads := (&codecs.H264Payloader{}).Payload(400, annexB)
	out := make([]Packet, len(payloads))
	for i, p := range payloads {
		out[i] = Packet{Seq: *seq, Timestamp: ts, Marker: i == len(payloads)-1, Payload: p, Arrival: time.Unix(0, 0)}
		*seq++
	}
	return out
}

// collect returns an emit function that keeps a copy of every frame (its
// units cloned: assemblers may reuse their buffers), and the frames kept.
func collect() (*[]Frame, func(*Frame)) {
	var frames []Frame
	return &frames, func(f *Frame) {
		c := *f
		c.NALUs = make([][]byte, len(f.NALUs))
		for i, n := range f.NALUs {
			c.NALUs[i] = bytes.Clone(n)
		}
		frames = append(frames, c)
	}
}

// pushFuzzed feeds payload to an assembler's Push as three packets, in and
// out of order, through a Reorder, as the fuzz targets do.
func pushFuzzed(payload []byte, marker bool, seq uint16, lost bool, push func(Packet, bool, func(*Frame)) error, emit func(*Frame)) {
	var r Reorder
	for i := range 3 {
		p := Packet{Seq: uint64(seq) + uint64(i*2%3), Timestamp: uint32(i / 2), Marker: marker, Payload: payload}
		r.Push(p, func(p Packet, l bool) { _ = push(p, l || lost, emit) })
	}
}

func TestH264Assembly(t *testing.T) {
	var seq uint64 = 100
	var pkts []Packet
	pkts = append(pkts, packetize(&seq, 1000, testSPS, testPPS, idr(1500))...)
	pkts = append(pkts, packetize(&seq, 4000, nonIDR(300))...)
	pkts = append(pkts, packetize(&seq, 7000, nonIDR(900), nonIDR(50))...)
	var h H264
	h.WaitKeyframe()
	frames, emit := collect()
	for _, p := range pkts {
		if err := h.Push(p, false, emit); err != nil {
			t.Fatal(err)
		}
	}
	if len(*frames) != 3 {
		t.Fatalf("got %d frames, want 3", len(*frames))
	}
	f := (*frames)[0]
	if !f.Keyframe || !bytes.Equal(f.SPS, testSPS) || !bytes.Equal(f.PPS, testPPS) || len(f.NALUs) != 1 || !bytes.Equal(f.NALUs[0], idr(1500)) {
		t.Errorf("keyframe: key=%v sps=%x pps=%x nalus=%d", f.Keyframe, f.SPS, f.PPS, len(f.NALUs))
	}
	if f := (*frames)[2]; f.Keyframe || len(f.NALUs) != 2 || !bytes.Equal(f.NALUs[0], nonIDR(900)) || f.Timestamp != 7000 {
		t.Errorf("third frame: key=%v nalus=%d ts=%d", f.Keyframe, len(f.NALUs), f.Timestamp)
	}
}

// A frame that lost a packet is dropped, and so is every frame after it
// until the next IDR.
func TestH264LossDropsUntilKeyframe(t *testing.T) {
	var seq uint64
	frames := [][]Packet{
		packetize(&seq, 0, testSPS, testPPS, idr(1500)),
		packetize(&seq, 3000, nonIDR(1200)), // loses its middle packet
		packetize(&seq, 6000, nonIDR(300)),
		packetize(&seq, 9000, testSPS, testPPS, idr(1500)),
		packetize(&seq, 12000, nonIDR(300)),
	}
	r := Reorder{MaxDelay: time.Millisecond}
	var h H264
	got, emit := collect()
	now := 0
	for i, f := range frames {
		for j, p := range f {
			now += 2 // ms: each packet 2 ms after the last, so a gap is given up on at once
			if i == 1 && j == 1 {
				continue
			}
			p.Arrival = time.Unix(0, int64(now)*int64(time.Millisecond))
			r.Push(p, func(p Packet, lost bool) { _ = h.Push(p, lost, emit) })
		}
	}
	var ts []int64
	for _, f := range *got {
		ts = append(ts, f.Timestamp)
	}
	if len(frames[1]) < 3 {
		t.Fatalf("the lossy frame has %d packets; the test needs 3 or more", len(frames[1]))
	}
	if want := []int64{0, 9000, 12000}; len(ts) != len(want) || ts[0] != 0 || ts[1] != 9000 || ts[2] != 12000 {
		t.Fatalf("frames out %v, want %v", ts, want)
	}
	if h.Dropped != 2 {
		t.Errorf("Dropped = %d, want 2", h.Dropped)
	}
}

func TestReorder(t *testing.T) {
	r := Reorder{MaxDelay: 50 * time.Millisecond}
	var out []uint64
	var losses []uint64
	emit := func(p Packet, lost bool) {
		out = append(out, p.Seq)
		if lost {
			losses = append(losses, p.Seq)
		}
	}
	at := func(ms int) time.Time { return time.Unix(0, int64(ms)*int64(time.Millisecond)) }
	r.Push(Packet{Seq: 10, Arrival: at(0)}, emit)
	r.Push(Packet{Seq: 12, Arrival: at(1)}, emit) // 11 late
	r.Push(Packet{Seq: 11, Arrival: at(2)}, emit) // arrives: 11, 12 out in order
	r.Push(Packet{Seq: 11, Arrival: at(3)}, emit) // duplicate: ignored
	r.Push(Packet{Seq: 14, Arrival: at(4)}, emit) // 13 lost
	r.Push(Packet{Seq: 15, Arrival: at(30)}, emit)
	r.Push(Packet{Seq: 16, Arrival: at(60)}, emit) // 56 ms after 14: give up on 13
	r.Push(Packet{Seq: 13, Arrival: at(61)}, emit) // too late: dropped
	want := []uint64{10, 11, 12, 14, 15, 16}
	if !equal(out, want) {
		t.Fatalf("out %v, want %v", out, want)
	}
	if !equal(losses, []uint64{14}) {
		t.Fatalf("losses flagged at %v, want [14]", losses)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestUnwrap(t *testing.T) {
	var u Unwrap
	for _, c := range []struct {
		in   uint32
		want int64
	}{{4294967000, 4294967000}, {100, 4294967396}, {4294967100, 4294967100}, {200, 4294967496}, {2000000000, 6294967296}, {1000000000, 5294967296}, {3000000000, 7294967296}} {
		if got := u.Extend(c.in); got != c.want {
			t.Errorf("Extend(%d) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestOpus(t *testing.T) {
	var o Opus
	var got []Frame
	for i, ts := range []uint32{4294966336, 0, 960} {
		err := o.Push(Packet{Seq: uint64(i), Timestamp: ts, Payload: []byte{0xfc, byte(i)}}, false, func(f *Frame) { got = append(got, *f) })
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 || got[1].Timestamp != 4294967296 || got[2].Timestamp != 4294968256 || !got[0].Keyframe {
		t.Fatalf("frames %+v", got)
	}
	if err := o.Push(Packet{Seq: 9}, false, func(*Frame) {}); err == nil {
		t.Error("an empty Opus payload was accepted")
	}
}

// FuzzH264 feeds arbitrary payloads, marker bits and loss flags through
// the reorder buffer and the H.264 assembler: nothing may panic, and every
// frame that comes out is within the size limits.
func FuzzH264(f *testing.F) {
	var seq uint64
	for _, p := range packetize(&seq, 0, testSPS, testPPS, idr(1500)) {
		f.Add(p.Payload, p.Marker, uint16(p.Seq), false)
	}
	f.Add([]byte{0x7c, 0x85, 1, 2, 3}, false, uint16(0), false) // FU-A start
	f.Add([]byte{0x7c, 0x45, 1, 2, 3}, true, uint16(1), true)   // FU-A end after loss
	f.Add([]byte{0x78, 0x00, 0x09, 0x67}, true, uint16(2), false)
	f.Add([]byte{0x78, 0xff, 0xff}, true, uint16(3), false) // STAP-A with a size past the end
	f.Add([]byte{0x1f}, true, uint16(4), false)             // reserved type
	f.Fuzz(func(t *testing.T, payload []byte, marker bool, seq uint16, lost bool) {
		var h H264
		emit := func(fr *Frame) {
			size := 0
			for _, n := range fr.NALUs {
				if len(n) == 0 {
					t.Fatal("empty NAL unit in a frame")
				}
				size += len(n)
			}
			if size > MaxFrameSize {
				t.Fatalf("frame of %d bytes", size)
			}
		}
		pushFuzzed(payload, marker, seq, lost, h.Push, emit)
	})
}
