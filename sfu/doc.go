// Package sfu owns hybridcast's live stream model and the fan-out of RTP.
//
// A [Registry] holds one [Router] per stream name. A publisher claims a Router
// with [Router.Publish] and adds one [Track] per received RTP stream (audio,
// video, and later one per simulcast layer). Everything that consumes media —
// a WHEP viewer today, the CMAF packager later — is a [Subscriber] of a Track:
//
//	publisher read loop ──WriteRTP──► Track ──┬─ subscription queue ─► Subscriber (WHEP viewer 1)
//	                                  │       ├─ subscription queue ─► Subscriber (WHEP viewer 2)
//	                    history (NACK)┘       └─ subscription queue ─► Subscriber (packager)
//
// The publisher's goroutine never blocks on a subscriber: each subscription
// has a bounded queue and its own goroutine. Packets are copied once per
// track into a reference-counted buffer that every queue and the NACK history
// share, so fan-out allocates nothing per packet and per subscriber.
//
// The package knows nothing about HTTP, WHIP, HLS or pion's PeerConnection;
// it depends on pion/rtp only. WebRTC plumbing lives in sfu/rtc and the WHEP
// endpoint in sfu/whep.
package sfu
