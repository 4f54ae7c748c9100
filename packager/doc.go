// Package packager remuxes a stream's RTP, as the SFU forwards it, into
// CMAF without transcoding, and describes it with LL-HLS playlists: every
// simulcast layer becomes one video rendition of an ABR ladder, Opus the
// audio rendition.
//
// The packager is one more subscriber of each sfu.Track. Per track it
// reorders packets, depacketizes frames (packager/internal/depack), maps
// RTP time to one wall-clock timeline shared by every track of the
// publication (RTCP sender reports, or arrival time when a track has none
// within Config.SenderReportWait), and cuts CMAF chunks (the LL-HLS parts)
// and segments (packager/internal/cmaf). Segment boundaries lie on one
// grid of Config.SegmentDuration for all renditions: at each boundary the
// packager asks every video layer for a keyframe and each layer cuts at its
// first keyframe at or after the boundary, so segment N of every variant
// starts at the same picture.
//
//	sfu.Track ──RTP──▶ pipeline (reorder, depack, clock, cut) ──▶ Rendition
//	                                                              │ View: segments, parts, inits
//	origin (HTTP) ◀── Stream.Multivariant / Stream.MediaPlaylist ─┘
//
// Its output is read through immutable snapshots (View): a reader never
// holds a lock while it writes to the network, and a View's Changed
// channel is closed when a newer one exists, which is what blocking
// playlist requests wait on.
//
// Media sequence numbers start, for each publication, at the index of its
// first segment on a grid counted from the Unix epoch, so they only grow,
// across publisher restarts and server restarts alike, and segment and
// part URLs never name different bytes: a CDN may cache them forever.
package packager
