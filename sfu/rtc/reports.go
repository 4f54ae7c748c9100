package rtc

import (
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// mediaReports wraps pion's sender-report interceptor so that a stream's
// sender reports count only the packets of its own SSRC.
//
// sfu/whep writes retransmissions and probe padding on the viewer's RTX
// stream (RFC 4588) through the media track's writer, the only one pion
// gives a TrackLocal, so pion's interceptor sees them as packets of the
// media stream. It would count them in the report's packet and octet
// counts, and when an RTX sequence number happens to lie ahead of the
// media's it would take the RTX packet's timestamp, which is the repaired
// packet's, as the media's current RTP time: every sender report after it
// would then put the video that much later against the audio (RFC 3550
// §6.4.1: the RTP timestamp "corresponds to the same time as the NTP
// timestamp"), and a browser would shift its lip sync by up to the age of
// the repaired packet, until the media's sequence number passed the RTX
// one (up to 32768 packets). RTX packets bypass the report here.
type mediaReports struct {
	interceptor.Interceptor
}

// mediaReportsFactory builds mediaReports around what f builds.
type mediaReportsFactory struct{ f interceptor.Factory }

func (m mediaReportsFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := m.f.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &mediaReports{Interceptor: i}, nil
}

// BindLocalStream hands packets of the stream's own SSRC to the report
// and every other packet (RTX) straight to writer.
func (m *mediaReports) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	reported := m.Interceptor.BindLocalStream(info, writer)
	ssrc := info.SSRC
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC != ssrc {
			return writer.Write(h, payload, a)
		}
		return reported.Write(h, payload, a)
	})
}
