package signal

import "testing"

func TestParseFragment(t *testing.T) {
	f, err := ParseFragment("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n" +
		"a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\na=end-of-candidates\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if f.Ufrag != "EsAw" || len(f.Candidates) != 1 || f.Candidates[0].Mid != "0" || !f.EndOfCandidates {
		t.Fatalf("fragment = %+v", f)
	}
	for _, bad := range []string{"hello", "a=candidate:nonsense\r\n"} {
		if _, err := ParseFragment(bad); err == nil {
			t.Errorf("ParseFragment(%q) accepted", bad)
		}
	}
}

func TestStreamName(t *testing.T) {
	for name, ok := range map[string]bool{"a": true, "Cam_1-x": true, "": false, "a.b": false, "a/b": false, "é": false,
		"0123456789012345678901234567890123456789012345678901234567890123":  true,
		"01234567890123456789012345678901234567890123456789012345678901234": false} {
		if err := StreamName(name); (err == nil) != ok {
			t.Errorf("StreamName(%q) = %v", name, err)
		}
	}
}

func FuzzParseFragment(f *testing.F) {
	f.Add("a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\na=mid:0\r\na=candidate:1 1 udp 2122260223 192.0.2.1 61764 typ host\r\n")
	f.Add("a=candidate:1 1 tcp 1 ::1 9 typ host tcptype active\r\na=end-of-candidates\r\n")
	f.Add("m=audio 9 RTP/AVP 0\r\nc=IN IP4 0.0.0.0\r\n")
	f.Fuzz(func(t *testing.T, body string) {
		_, _ = ParseFragment(body)
	})
}
