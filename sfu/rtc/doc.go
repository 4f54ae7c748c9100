// Package rtc is the WebRTC plumbing shared by WHIP ingest and WHEP
// playback: one pion API per role with hybridcast's codec preferences, all
// media on one UDP port (ICE UDP mux) and ICE-TCP on the same port number,
// and the validation of remote SDP offers.
package rtc
