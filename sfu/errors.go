package sfu

import "errors"

var (
	// ErrTrackClosed is returned when writing to or subscribing to a closed Track.
	ErrTrackClosed = errors.New("sfu: track closed")
	// ErrPublisherExists is returned by Router.Publish when the stream already has a live publisher.
	ErrPublisherExists = errors.New("sfu: stream already has a publisher")
	// ErrPublicationClosed is returned when adding a track to a closed Publication.
	ErrPublicationClosed = errors.New("sfu: publication closed")
	// ErrPacketTooLarge is returned for an RTP packet larger than MaxPacketSize.
	ErrPacketTooLarge = errors.New("sfu: rtp packet too large")
)
