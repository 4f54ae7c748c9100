package sfu

import "testing"

// vp8Desc builds a descriptor with a 15-bit picture ID and a TL0PICIDX.
func vp8Desc(pic uint16, tl0 byte, key bool) []byte {
	p := []byte{0x90, 0xc0, 0x80 | byte(pic>>8), byte(pic), tl0, 0x00, 0xaa}
	if !key {
		p[5] = 0x01
	}
	return p
}

func TestVP8MungerContinuesAcrossSwitch(t *testing.T) {
	var m VP8Munger
	buf := make([]byte, 64)
	pics := func(p []byte) (uint16, byte) {
		f, _ := parseVP8Fields(p)
		return f.pic(p), p[f.tl0At]
	}
	// Layer A: pictures 1000..1002, TL0 7..9.
	for i := range uint16(3) {
		out := m.Munge(vp8Desc(1000+i, byte(7+i), i == 0), buf)
		if pic, tl0 := pics(out); pic != 1000+i || tl0 != byte(7+i) {
			t.Fatalf("first source rewritten: %d %d", pic, tl0)
		}
	}
	// Switch to layer B at its keyframe: pictures 20..21, TL0 200..201.
	m.SwitchSource()
	for i := range uint16(2) {
		in := vp8Desc(20+i, byte(200+i), i == 0)
		out := m.Munge(in, buf)
		if pic, tl0 := pics(out); pic != 1003+i || tl0 != byte(10+i) {
			t.Fatalf("after the switch, packet %d: picture %d TL0 %d, want %d %d", i, pic, tl0, 1003+i, 10+i)
		}
		if out[len(out)-1] != 0xaa || len(out) != len(in) {
			t.Fatal("payload body changed")
		}
	}
	// 15-bit wrap.
	m.SwitchSource()
	m.lastPic = 0x7fff
	out := m.Munge(vp8Desc(5, 0, true), buf)
	if pic, _ := pics(out); pic != 0 {
		t.Fatalf("wrap: picture %d, want 0", pic)
	}
}

func FuzzVP8Munge(f *testing.F) {
	f.Add(vp8Desc(1000, 7, true), true)
	f.Add([]byte{0x80, 0x80, 0x05, 0x00}, false)
	f.Add([]byte{0x90}, true)
	f.Fuzz(func(t *testing.T, p []byte, sw bool) {
		var m VP8Munger
		buf := make([]byte, len(p))
		_ = m.Munge(p, buf)
		if sw {
			m.SwitchSource()
		}
		out := m.Munge(p, buf)
		if len(out) != len(p) {
			t.Fatalf("length changed: %d → %d", len(p), len(out))
		}
	})
}
