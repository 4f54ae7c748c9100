package browsertest

import "time"

// Stats is a snapshot of the WebRTC statistics of a page. It comes from
// RTCPeerConnection.getStats in the browser.
type Stats struct {
	// Publisher holds the statistics of the WHIP session, or nil when the
	// page does not publish.
	Publisher *PublisherStats `json:"publisher"`
	// Viewer holds the statistics of the WHEP session, or nil when the page
	// does not play.
	Viewer *ViewerStats `json:"viewer"`
	// Timings holds the times of the WHEP session.
	Timings Timings `json:"timings"`
}

// PublisherStats are the statistics of the WHIP session of a page.
type PublisherStats struct {
	// ConnectionState is RTCPeerConnection.connectionState, such as "new",
	// "connecting", "connected", "failed" or "closed".
	ConnectionState string `json:"connectionState"`
	// Video maps the rid of each video encoding to its statistics. Without
	// simulcast, the single encoding has the rid "". An encoding appears once
	// the browser reports it.
	Video map[string]OutboundVideo `json:"video"`
	// AudioPacketsSent counts the audio RTP packets sent.
	AudioPacketsSent int64 `json:"audioPacketsSent"`
}

// OutboundVideo are the statistics of one video encoding that the browser
// sends (an "outbound-rtp" entry of getStats).
type OutboundVideo struct {
	PacketsSent   int64 `json:"packetsSent"`
	FramesEncoded int64 `json:"framesEncoded"`
	FrameWidth    int   `json:"frameWidth"`
	FrameHeight   int   `json:"frameHeight"`
	// EncoderImplementation names the encoder, such as "OpenH264" or
	// "SimulcastEncoderAdapter (OpenH264, OpenH264, OpenH264)".
	EncoderImplementation string `json:"encoderImplementation"`
	// QualityLimitationReason is "none", "cpu", "bandwidth" or "other".
	QualityLimitationReason string `json:"qualityLimitationReason"`
}

// ViewerStats are the statistics of the WHEP session of a page. The video
// counters are the sums over the "inbound-rtp" entries of kind video.
type ViewerStats struct {
	// ConnectionState is RTCPeerConnection.connectionState.
	ConnectionState       string `json:"connectionState"`
	FramesDecoded         int64  `json:"framesDecoded"`
	FrameWidth            int    `json:"frameWidth"`
	FrameHeight           int    `json:"frameHeight"`
	PacketsLost           int64  `json:"packetsLost"`
	VideoPacketsReceived  int64  `json:"videoPacketsReceived"`
	AudioPacketsReceived  int64  `json:"audioPacketsReceived"`
	DecoderImplementation string `json:"decoderImplementation"`
	// JitterBufferDelay is the video frames' summed time in the jitter
	// buffer, in seconds, over JitterBufferEmittedCount frames: their
	// quotient is the mean delay the receiver added before decoding.
	JitterBufferDelay        float64 `json:"jitterBufferDelay"`
	JitterBufferEmittedCount int64   `json:"jitterBufferEmittedCount"`
	// FreezeCount and TotalFreezesDuration (seconds) count the video's
	// freezes as the browser defines them (a frame later than the larger of
	// three times the mean frame duration and that plus 150 ms).
	FreezeCount          int64   `json:"freezeCount"`
	TotalFreezesDuration float64 `json:"totalFreezesDuration"`
	// NackCount counts the NACKs the browser sent for video;
	// RetransmittedPacketsReceived the video packets it received as
	// retransmissions on an RTX stream.
	NackCount                    int64 `json:"nackCount"`
	RetransmittedPacketsReceived int64 `json:"retransmittedPacketsReceived"`
	// VideoWidth and VideoHeight are the size of the video element's
	// current frame; they are 0 until it has one.
	VideoWidth  int `json:"videoWidth"`
	VideoHeight int `json:"videoHeight"`
}

// Timings are the times of the events of the WHEP session of a page, in
// milliseconds after Play began (performance.now in the page). A field is 0
// until its event happened.
type Timings struct {
	// AnswerMs is when the browser applied the WHEP answer.
	AnswerMs float64 `json:"answerMs"`
	// ConnectedMs is when the peer connection became "connected".
	ConnectedMs float64 `json:"connectedMs"`
	// LoadedDataMs is when the video element fired "loadeddata".
	LoadedDataMs float64 `json:"loadedDataMs"`
	// FirstFrameMs is when the video element presented its first decoded
	// frame (the first requestVideoFrameCallback).
	FirstFrameMs float64 `json:"firstFrameMs"`
}

// FirstFrame returns the time from Play to the first decoded frame, and
// whether that frame came.
func (t Timings) FirstFrame() (time.Duration, bool) {
	return msDuration(t.FirstFrameMs), t.FirstFrameMs > 0
}

func msDuration(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond))
}
