package whep

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/hybridcast/hybridcast/internal/signal"
	"github.com/hybridcast/hybridcast/sfu"
)

// The video layer selection extension of the WHEP draft
// (draft-ietf-wish-whep, "Video Layer Selection extension"):
//
//	Link: </whep/{stream}/{id}/layer>; rel="urn:ietf:params:whep:ext:core:layer"
//
//	POST /whep/{stream}/{id}/layer  {"mediaId":"1","encodingId":"h"}  → 200, pins layer "h"
//	POST /whep/{stream}/{id}/layer  {}                                → 200, automatic again
//	GET  /whep/{stream}/{id}/layer                                    → the layers, as the
//	     draft's "layers" event data: {"<mid>": {"active": […], "inactive": […], "layers": […]}}
//
// The draft also asks for its server-sent-events extension with a "layers"
// event; GET on the layer URL serves the same JSON until that exists.
const layerRel = "urn:ietf:params:whep:ext:core:layer"

func layerLinks(location string) []string {
	return []string{"<" + location + `/layer>; rel="` + layerRel + `"`}
}

// layerRequest is the JSON body of a layer selection.
type layerRequest struct {
	MediaID    string `json:"mediaId,omitempty"`
	EncodingID string `json:"encodingId,omitempty"`
}

// layerInfo is one layer in the listing.
type layerInfo struct {
	ID           string `json:"id,omitempty"`
	EncodingID   string `json:"encodingId,omitempty"`
	SimulcastIdx int    `json:"simulcastIdx"`
	Bitrate      int    `json:"bitrate,omitempty"`
	Width        int    `json:"width,omitempty"`
	Height       int    `json:"height,omitempty"`
}

type layersEvent struct {
	Active   []layerInfo `json:"active"`
	Inactive []layerInfo `json:"inactive"`
	Layers   []layerInfo `json:"layers"`
	// Selected is hybridcast's addition: the RID being forwarded and the
	// pinned one ("" for automatic).
	Selected string `json:"selected,omitempty"`
	Pinned   string `json:"pinned,omitempty"`
}

func (h *Handler) serveLayer(w http.ResponseWriter, r *http.Request) {
	signal.CORS(w, "GET, POST, OPTIONS")
	res, ok := h.Session(r.PathValue("stream"), r.PathValue("id"))
	if !ok {
		signal.WriteError(w, signal.Errorf(http.StatusNotFound, "no WHEP session %q on stream %q", r.PathValue("id"), r.PathValue("stream")))
		return
	}
	s := res.(*session)
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(s.layers())
	case http.MethodPost:
		if err := s.selectLayer(r); err != nil {
			signal.WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

// selectLayer applies a layer selection request.
func (s *session) selectLayer(r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return signal.Errorf(http.StatusUnsupportedMediaType, "Content-Type %q not supported: want application/json", ct)
	}
	var req layerRequest
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
	if err := dec.Decode(&req); err != nil && !errors.Is(err, io.EOF) {
		return signal.Errorf(http.StatusBadRequest, "layer selection is not valid JSON: %w", err)
	}
	if req.MediaID != "" && req.MediaID != s.videoMid() {
		return signal.Errorf(http.StatusBadRequest, "mediaId %q is not this session's video section (%q)", req.MediaID, s.videoMid())
	}
	if req.EncodingID != "" {
		if !validRID(req.EncodingID) {
			return signal.Errorf(http.StatusBadRequest, "invalid encodingId %q", req.EncodingID)
		}
		tracks, _ := s.router.Tracks()
		found := false
		for _, t := range tracks {
			found = found || (t.Info().Kind == sfu.KindVideo && t.Info().RID == req.EncodingID)
		}
		if !found {
			return signal.Errorf(http.StatusBadRequest, "no layer %q in this stream; GET the layer URL to list them", req.EncodingID)
		}
	}
	s.mu.Lock()
	s.pin = req.EncodingID
	s.mu.Unlock()
	select { // re-choose now
	case s.switched <- struct{}{}:
	default:
	}
	return nil
}

// layers lists the stream's video layers, best first.
func (s *session) layers() map[string]layersEvent {
	tracks, _ := s.router.Tracks()
	ev := layersEvent{Active: []layerInfo{}, Inactive: []layerInfo{}, Layers: []layerInfo{}, Pinned: s.pinned()}
	for i, t := range sfu.RankLayers(tracks) {
		l := t.Layer()
		info := layerInfo{ID: t.Info().RID, SimulcastIdx: i, Bitrate: l.Bitrate, Width: l.Width, Height: l.Height}
		if l.Active {
			ev.Active = append(ev.Active, info)
			sel := info
			sel.ID, sel.EncodingID = "", t.Info().RID
			ev.Layers = append(ev.Layers, sel)
		} else {
			ev.Inactive = append(ev.Inactive, info)
		}
	}
	for _, dt := range s.tracks {
		if cur, _ := dt.current(); cur != nil && cur.Info().Kind == sfu.KindVideo {
			ev.Selected = cur.Info().RID
		}
	}
	return map[string]layersEvent{s.videoMid(): ev}
}
