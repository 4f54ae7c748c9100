// Package ingest turns WHIP (RFC 9725) sessions into publishers on an
// sfu.Router.
//
//	POST   /whip/{stream}        application/sdp offer → 201, Location, ETag, answer
//	OPTIONS /whip/{stream}       CORS preflight, Accept-Post
//	PATCH  /whip/{stream}/{id}   trickle ICE (application/trickle-ice-sdpfrag) → 204
//	DELETE /whip/{stream}/{id}   end the session → 200
//
// Each received RTP stream becomes an sfu.Track; its read loop is the
// track's forwarding goroutine. Keyframe requests from the SFU become RTCP
// PLIs to the publisher; the publisher's RTCP sender reports are kept on the
// track as its RTP↔NTP clock.
//
// Simulcast comes as RID layers (a=rid, a=simulcast, RID header extension)
// or as SSRC layers (a=ssrc-group:SIM); the latter are rewritten into RID
// form and tagged in the packets (ssrcsim.go, ridtag.go), so both reach the
// SFU as one track per layer.
package ingest
