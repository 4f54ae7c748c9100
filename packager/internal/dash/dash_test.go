package dash

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ladder() Manifest {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	return Manifest{
		AvailabilityStart: t0, PublishTime: t0.Add(3 * time.Second), StartNumber: 1795521600,
		SegmentDuration: time.Second, PartDuration: 200 * time.Millisecond, Window: 30 * time.Second,
		TargetLatency: 900 * time.Millisecond, UpdatePeriod: 2 * time.Second,
		TimeURL: "http://127.0.0.1:8080/time", PeriodID: "p1795521600",
		Video: []Representation{
			{ID: "video-f", Bandwidth: 2600000, Codecs: "avc1.42e01f", Width: 1280, Height: 720, FrameRate: 30, Init: "init-1795521601.mp4", Timescale: 90000},
			{ID: "video-h", Bandwidth: 900000, Codecs: "avc1.42e01f", Width: 640, Height: 360, FrameRate: 29.97, Init: "init-1795521601.mp4", Timescale: 90000},
		},
		Audio: &Representation{ID: "audio", Bandwidth: 88000, Codecs: "opus", Channels: 2, Init: "init-1795521601.mp4", Timescale: 48000},
	}
}

func TestGoldenMPD(t *testing.T) {
	m := ladder()
	got := m.Render()
	path := filepath.Join("testdata", "golden", "live.mpd")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./packager/... -update makes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("MPD differs from the golden file:\n%s", got)
	}
}

// node is a generic XML tree for checking structure.
type node struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []node     `xml:",any"`
}

func (n node) attr(name string) (string, bool) {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (n node) names() []string {
	var out []string
	for _, c := range n.Children {
		out = append(out, c.XMLName.Local)
	}
	return out
}

// inOrder reports whether the element names follow the schema's sequence
// (each name's position in order never goes back).
func inOrder(names, order []string) bool {
	last := -1
	for _, n := range names {
		i := slices.Index(order, n)
		if i < 0 || i < last {
			return false
		}
		last = i
	}
	return true
}

// TestMPDSchemaRules checks the parts of the DASH schema (ISO/IEC 23009-1,
// MPDtype, PeriodType, AdaptationSetType, RepresentationType) that players
// rely on: the namespace, the order of child elements, and the attributes
// a dynamic MPD with SegmentTemplate must carry.
func TestMPDSchemaRules(t *testing.T) {
	m := ladder()
	var root node
	if err := xml.Unmarshal(m.Render(), &root); err != nil {
		t.Fatal(err)
	}
	if root.XMLName.Space != "urn:mpeg:dash:schema:mpd:2011" || root.XMLName.Local != "MPD" {
		t.Fatalf("root element %v", root.XMLName)
	}
	for _, a := range []string{"profiles", "type", "availabilityStartTime", "publishTime", "minimumUpdatePeriod", "minBufferTime", "timeShiftBufferDepth"} {
		if _, ok := root.attr(a); !ok {
			t.Errorf("MPD lacks @%s", a)
		}
	}
	if v, _ := root.attr("type"); v != "dynamic" {
		t.Errorf("MPD@type %q", v)
	}
	mpdOrder := []string{"ProgramInformation", "BaseURL", "Location", "PatchLocation", "ServiceDescription", "InitializationSet",
		"InitializationGroup", "InitializationPresentation", "ContentProtection", "Period", "Metrics", "EssentialProperty",
		"SupplementalProperty", "UTCTiming", "LeapSecondInformation"}
	if !inOrder(root.names(), mpdOrder) {
		t.Errorf("MPD children out of schema order: %v", root.names())
	}
	var period *node
	for i := range root.Children {
		if root.Children[i].XMLName.Local == "Period" {
			period = &root.Children[i]
		}
	}
	if period == nil {
		t.Fatal("no Period")
	}
	if _, ok := period.attr("id"); !ok {
		t.Error("a dynamic MPD's Period needs @id")
	}
	repBase := []string{"FramePacking", "AudioChannelConfiguration", "ContentProtection", "OutputProtection", "EssentialProperty",
		"SupplementalProperty", "InbandEventStream", "Switching", "RandomAccess", "GroupLabel", "Label", "ProducerReferenceTime",
		"ContentPopularityRate", "Resync"}
	asOrder := append(append([]string{}, repBase...), "Accessibility", "Role", "Rating", "Viewpoint", "ContentComponent",
		"BaseURL", "SegmentBase", "SegmentList", "SegmentTemplate", "Representation")
	repOrder := append(append([]string{}, repBase...), "BaseURL", "ExtendedBandwidth", "SubRepresentation", "SegmentBase",
		"SegmentList", "SegmentTemplate")
	reps := 0
	for _, as := range period.Children {
		if as.XMLName.Local != "AdaptationSet" {
			t.Errorf("unexpected Period child %s", as.XMLName.Local)
			continue
		}
		if !inOrder(as.names(), asOrder) {
			t.Errorf("AdaptationSet children out of order: %v", as.names())
		}
		for _, rep := range as.Children {
			reps++
			if !inOrder(rep.names(), repOrder) {
				t.Errorf("Representation children out of order: %v", rep.names())
			}
			for _, a := range []string{"id", "bandwidth", "codecs"} {
				if _, ok := rep.attr(a); !ok {
					t.Errorf("Representation lacks @%s", a)
				}
			}
			var tmpl *node
			for i := range rep.Children {
				if rep.Children[i].XMLName.Local == "SegmentTemplate" {
					tmpl = &rep.Children[i]
				}
			}
			if tmpl == nil {
				t.Fatal("Representation without SegmentTemplate")
			}
			for _, a := range []string{"timescale", "duration", "startNumber", "initialization", "media", "availabilityTimeOffset", "availabilityTimeComplete"} {
				if _, ok := tmpl.attr(a); !ok {
					t.Errorf("SegmentTemplate lacks @%s", a)
				}
			}
		}
	}
	if reps != 3 {
		t.Errorf("%d representations, want 3", reps)
	}
}
