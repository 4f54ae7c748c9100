package client

import (
	"errors"
	"fmt"
)

// ErrInvalidSPS is wrapped by [ParseSPS] errors.
var ErrInvalidSPS = errors.New("client: invalid H.264 SPS")

// SPSInfo is what [ParseSPS] reads from an H.264 sequence parameter set.
type SPSInfo struct {
	// ProfileIDC is profile_idc, e.g. 66 for Baseline.
	ProfileIDC uint8
	// ConstraintFlags is the byte holding constraint_set0..5_flag.
	ConstraintFlags uint8
	// LevelIDC is level_idc, e.g. 31 for level 3.1.
	LevelIDC uint8
	// Width and Height are the cropped picture size in luma samples.
	Width, Height int
}

// ParseSPS parses an SPS NAL unit (with its one-byte NAL header, without a
// start code) far enough to return the profile, level and cropped picture
// size (ITU-T H.264 §7.3.2.1.1 and §7.4.2.1.1, frame cropping equations
// 7-19 to 7-22).
func ParseSPS(nal []byte) (SPSInfo, error) {
	if len(nal) < 4 {
		return SPSInfo{}, fmt.Errorf("%w: %d bytes", ErrInvalidSPS, len(nal))
	}
	if t := nal[0] & 0x1f; t != naluSPS {
		return SPSInfo{}, fmt.Errorf("%w: NAL unit type %d", ErrInvalidSPS, t)
	}
	r := bitReader{buf: unescapeRBSP(nal[1:])}
	info := SPSInfo{}
	info.ProfileIDC = uint8(r.bits(8))
	info.ConstraintFlags = uint8(r.bits(8))
	info.LevelIDC = uint8(r.bits(8))
	if r.ue() > 31 { // seq_parameter_set_id
		return SPSInfo{}, fmt.Errorf("%w: seq_parameter_set_id out of range", ErrInvalidSPS)
	}
	chromaFormatIDC := uint32(1)
	separateColourPlane := false
	switch info.ProfileIDC {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chromaFormatIDC = r.ue()
		if chromaFormatIDC > 3 {
			return SPSInfo{}, fmt.Errorf("%w: chroma_format_idc %d", ErrInvalidSPS, chromaFormatIDC)
		}
		if chromaFormatIDC == 3 {
			separateColourPlane = r.bit()
		}
		r.ue()       // bit_depth_luma_minus8
		r.ue()       // bit_depth_chroma_minus8
		r.bit()      // qpprime_y_zero_transform_bypass_flag
		if r.bit() { // seq_scaling_matrix_present_flag
			n := 8
			if chromaFormatIDC == 3 {
				n = 12
			}
			for i := range n {
				if r.bit() { // seq_scaling_list_present_flag[i]
					size := 16
					if i >= 6 {
						size = 64
					}
					skipScalingList(&r, size)
				}
			}
		}
	}
	if r.ue() > 12 { // log2_max_frame_num_minus4
		return SPSInfo{}, fmt.Errorf("%w: log2_max_frame_num_minus4 out of range", ErrInvalidSPS)
	}
	switch pocType := r.ue(); pocType {
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.bit() // delta_pic_order_always_zero_flag
		r.se()  // offset_for_non_ref_pic
		r.se()  // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return SPSInfo{}, fmt.Errorf("%w: num_ref_frames_in_pic_order_cnt_cycle %d", ErrInvalidSPS, n)
		}
		for range n {
			r.se()
		}
	case 2:
	default:
		return SPSInfo{}, fmt.Errorf("%w: pic_order_cnt_type %d", ErrInvalidSPS, pocType)
	}
	r.ue()  // max_num_ref_frames
	r.bit() // gaps_in_frame_num_value_allowed_flag
	widthMbs := uint64(r.ue()) + 1
	heightMapUnits := uint64(r.ue()) + 1
	frameMbsOnly := r.bit()
	if !frameMbsOnly {
		r.bit() // mb_adaptive_frame_field_flag
	}
	r.bit() // direct_8x8_inference_flag
	var cropLeft, cropRight, cropTop, cropBottom uint64
	if r.bit() { // frame_cropping_flag
		cropLeft, cropRight = uint64(r.ue()), uint64(r.ue())
		cropTop, cropBottom = uint64(r.ue()), uint64(r.ue())
	}
	if r.err != nil {
		return SPSInfo{}, fmt.Errorf("%w: %w", ErrInvalidSPS, r.err)
	}
	fieldFactor := uint64(2)
	if frameMbsOnly {
		fieldFactor = 1
	}
	// Equations 7-19 to 7-22: CropUnitX/Y depend on the chroma format.
	cropUnitX, cropUnitY := uint64(1), fieldFactor
	if !separateColourPlane && chromaFormatIDC != 0 {
		subWidthC, subHeightC := uint64(2), uint64(2)
		switch chromaFormatIDC {
		case 2:
			subHeightC = 1
		case 3:
			subWidthC, subHeightC = 1, 1
		}
		cropUnitX, cropUnitY = subWidthC, subHeightC*fieldFactor
	}
	w := widthMbs * 16
	h := heightMapUnits * 16 * fieldFactor
	cx := cropUnitX * (cropLeft + cropRight)
	cy := cropUnitY * (cropTop + cropBottom)
	if w > 1<<16 || h > 1<<16 || cx >= w || cy >= h {
		return SPSInfo{}, fmt.Errorf("%w: size %dx%d with cropping %d,%d", ErrInvalidSPS, w, h, cx, cy)
	}
	info.Width, info.Height = int(w-cx), int(h-cy)
	return info, nil
}

// skipScalingList reads scaling_list() (§7.3.2.1.1.1) without keeping it.
func skipScalingList(r *bitReader, size int) {
	last, next := int32(8), int32(8)
	for range size {
		if next != 0 {
			next = (last + r.se() + 256) % 256
		}
		if next != 0 {
			last = next
		}
		if r.err != nil {
			return
		}
	}
}

// unescapeRBSP removes emulation prevention bytes (00 00 03 → 00 00).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

var errBitstreamEnd = errors.New("bitstream ends early")

// bitReader reads big-endian bits and Exp-Golomb codes. After the first
// error every read returns 0 and err stays set.
type bitReader struct {
	buf []byte
	pos int // in bits
	err error
}

func (r *bitReader) bit() bool { return r.bits(1) == 1 }

func (r *bitReader) bits(n int) uint32 {
	var v uint32
	for range n {
		if r.err != nil {
			return 0
		}
		if r.pos >= len(r.buf)*8 {
			r.err = errBitstreamEnd
			return 0
		}
		b := r.buf[r.pos/8] >> (7 - uint(r.pos%8)) & 1
		v = v<<1 | uint32(b)
		r.pos++
	}
	return v
}

// ue reads ue(v) (§9.1). Codes longer than 32 bits are an error.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for !r.bit() {
		if r.err != nil {
			return 0
		}
		zeros++
		if zeros > 31 {
			r.err = errors.New("exp-Golomb code too long")
			return 0
		}
	}
	return (1<<zeros - 1) + r.bits(zeros)
}

// se reads se(v) (§9.1.1).
func (r *bitReader) se() int32 {
	k := r.ue()
	if k%2 == 1 {
		return int32((k + 1) / 2)
	}
	return -int32(k / 2)
}
