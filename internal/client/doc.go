// Package client holds real pion WebRTC clients for WHIP (RFC 9725) and
// WHEP: [Publish] sends looped media files to a WHIP endpoint and
// [Play] receives a stream from a WHEP endpoint and checks what arrives.
// They are used by the server's tests, by the programs in examples/ and by
// load tools.
//
// Media is loaded once into memory as a [Clip] (see [LoadH264], [LoadOpus],
// [LoadIVF] and [LoadClip]) so that many publishers can loop the same file
// cheaply. A publisher paces frames in real time from one goroutine, keeps
// RTP timestamps increasing across loops and answers a keyframe request
// (RTCP PLI or FIR) with the next keyframe of the file at once.
//
// A viewer reassembles H.264 access units (STAP-A, FU-A), counts lost
// packets from sequence numbers, tells complete frames from incomplete ones,
// parses the resolution from the SPS and can record the decodable stream as
// Annex-B for ffprobe.
//
// Publisher and viewer frames can be matched for latency measurements with
// [PayloadFingerprint]: servers rewrite SSRC, sequence numbers and RTP
// timestamps but forward payloads unchanged.
package client
