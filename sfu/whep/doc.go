// Package whep serves WebRTC playback (WHEP) from an sfu.Registry.
//
//	POST    /whep/{stream}       application/sdp offer → 201, Location, ETag, answer
//	OPTIONS /whep/{stream}       CORS preflight, Accept-Post
//	PATCH   /whep/{stream}/{id}  trickle ICE → 204
//	DELETE  /whep/{stream}/{id}  end the session → 200
//
// A viewer is a set of downtracks (one audio, one video), each an
// sfu.Subscriber of the stream's current track of its kind and a pion
// TrackLocal of the viewer's PeerConnection. A downtrack rewrites SSRC,
// sequence numbers and timestamps so the viewer sees one continuous stream
// across publisher restarts, answers the viewer's NACKs from the track's
// shared history and passes its PLI/FIR on to the publisher (throttled by
// the track).
package whep
